"""The command line without servers: parsing and output of every command (the commands' work is
replaced where it needs a server), `mlpipe contract` and `mlpipe quarantine`."""

from __future__ import annotations

import argparse
import json

import pytest

from ml import cli
from ml.dev import demo
from ml.dev.stack import lifecycle
from ml.settings import get_settings

pytestmark = pytest.mark.unit


def test_quarantine_subcommands_parse():
    parser = cli.build_parser()
    args = parser.parse_args(["quarantine", "list", "flights", "--all"])
    assert (args.action, args.dataset, args.all) == ("list", "flights", True)
    args = parser.parse_args(["quarantine", "release", "s3://quarantine/a/b/c", "--by", "al"])
    assert (args.action, args.ref, args.by, args.contract) == (
        "release",
        "s3://quarantine/a/b/c",
        "al",
        None,
    )
    args = parser.parse_args(["quarantine", "drop", "s3://quarantine/a/b/c", "--note", "junk"])
    assert (args.action, args.note) == ("drop", "junk")
    with pytest.raises(SystemExit):
        parser.parse_args(["quarantine", "purge", "s3://quarantine/a/b/c"])  # no deleting


def test_contract_check_needs_a_file():
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["contract", "check"])


def test_missing_contract_file_exits_non_zero(tmp_path, capsys):
    assert cli.main(["contract", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "no such contract file" in capsys.readouterr().err


def test_every_command_is_there():
    parser = cli.build_parser()
    for argv in (
        ["stack", "up"],
        ["demo", "--date-from", "2013-02-01", "--json"],
        ["contract", "check", "flights"],
        ["quarantine", "show", "s3://quarantine/a/b/c"],
        ["model", "rollback", "flights_delay", "--no-trigger"],
        ["lineage", "s3://raw/a/b/c", "--raw"],
        ["run", "train_flights", "--conf", '{"epochs": 2}', "--no-wait"],
        ["stack", "logs", "mlflow", "-n", "5"],
    ):
        args = parser.parse_args(argv)
        assert args.command == argv[0]
        assert callable(args.func)
    args = parser.parse_args(["demo"])
    assert (args.date_from, args.date_to, args.timeout, args.json) == (
        "2013-01-01",
        "2013-01-10",
        480.0,
        False,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["stack", "restart"])


def test_stack_status_prints_a_row_per_service(monkeypatch, capsys):
    rows = [
        lifecycle.ServiceStatus("s3", "running", 123, "http://127.0.0.1:9000"),
        lifecycle.ServiceStatus("airflow-scheduler", "stopped", None, None),
    ]
    monkeypatch.setattr(lifecycle, "status", lambda: rows)
    assert cli.main(["stack", "status"]) == 1  # not everything runs
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "s3                     running  pid=123      http://127.0.0.1:9000",
        "airflow-scheduler      stopped  pid=-        ",
    ]


def test_stack_up_prints_the_urls(monkeypatch, capsys):
    monkeypatch.setattr(lifecycle, "up", lambda: {"S3": "http://127.0.0.1:9000"})
    assert cli.main(["stack", "up"]) == 0
    assert capsys.readouterr().out == "S3           http://127.0.0.1:9000\n"


def test_demo_json_and_exit_code(monkeypatch, capsys):
    summary = demo.DemoSummary(
        ok=False,
        dates="2013-01-01 .. 2013-01-02",
        runs={"ingest_flights": "failed"},
        ingested={"flights": 0},
        validated={"flights": 0},
        quarantined={"flights": 0},
        seconds=3.0,
    )
    monkeypatch.setattr(demo, "run", lambda **kwargs: summary)
    assert cli.main(["demo", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == summary.to_dict()


def test_placeholder_secrets_stop_the_cli_with_a_clear_message(monkeypatch, tmp_path, capsys):
    from ml.settings import reset_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPIPE_PII_SALT", "change-me")
    reset_settings()
    try:
        assert cli.main(["contract", "check", str(tmp_path / "nope.yaml")]) == 2
    finally:
        reset_settings()
    assert "MLPIPE_PII_SALT" in capsys.readouterr().err


def test_placeholder_secrets_do_not_block_stopping_the_stack(monkeypatch, tmp_path):
    from ml.dev.stack import lifecycle
    from ml.settings import reset_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPIPE_PII_SALT", "change-me")
    stopped = []
    monkeypatch.setattr(lifecycle, "down", lambda *a, **k: stopped.append(True))
    reset_settings()
    try:
        assert cli.main(["stack", "down"]) == 0
    finally:
        reset_settings()
    assert stopped


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlpipe {version('mlpipe')}"


def _actions(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield parser.prog, action


def test_every_option_and_argument_has_help():
    missing = [
        f"{prog} {action.dest}"
        for prog, action in _actions(cli.build_parser())
        if not action.help and action.dest not in ("help", "version")
    ]
    assert not missing, missing


def test_a_failure_is_one_line_with_where_to_look(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MLPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLPIPE_AIRFLOW_API_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setattr("ml.dev.airflow_api.RETRY_DELAYS", (0.01,))
    get_settings.cache_clear()
    try:
        assert cli.main(["run", "ingest_flights"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("mlpipe run: ConnectionError: "), err
    assert "mlpipe stack logs SERVICE" in err[1] and str(tmp_path / "state") in err[1]


def test_stack_logs_prints_the_tail_of_a_service_log(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MLPIPE_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    try:
        logs = tmp_path / "state" / "logs"
        logs.mkdir(parents=True)
        (logs / "mlflow.log").write_text("".join(f"line {i}\n" for i in range(100)))
        assert cli.main(["stack", "logs", "mlflow", "-n", "3"]) == 0
        assert capsys.readouterr().out == "line 97\nline 98\nline 99\n"
        assert cli.main(["stack", "logs", "nope"]) == 2
        assert "one of s3, mlflow" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_run_refuses_conf_that_is_not_a_json_object(capsys):
    assert cli.main(["run", "train_flights", "--conf", "[1, 2]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
