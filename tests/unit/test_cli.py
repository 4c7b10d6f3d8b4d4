"""`mlpipe contract` and `mlpipe quarantine`: the command line, without servers."""

from __future__ import annotations

import pytest

from ml import cli

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
