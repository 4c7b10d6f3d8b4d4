"""`mlpipe`: the command line of the pipeline (stack, demo, contracts, quarantine, models, lineage)."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _cmd_stack(args: argparse.Namespace) -> int:
    from ml.dev.stack import lifecycle  # deferred: fast CLI start

    if args.action == "up":
        urls = lifecycle.up()
        for name, url in urls.items():
            print(f"{name:<12} {url}")
        return 0
    if args.action == "status":
        rows = lifecycle.status()
        for row in rows:
            print(f"{row.name:<22} {row.state:<8} pid={row.pid or '-':<8} {row.url or ''}")
        return 0 if all(r.state == "running" for r in rows) else 1
    if args.action == "down":
        lifecycle.down()
        print("stack is down")
        return 0
    if args.action == "logs":
        return _stack_logs(args)
    raise AssertionError(args.action)


def _stack_logs(args: argparse.Namespace) -> int:
    """The last lines of a service's log (`--follow`: then what it writes, until Ctrl-C)."""
    import time
    from collections import deque

    from ml.dev.stack.layout import SERVICES, log_file  # deferred: fast CLI start
    from ml.settings import get_settings  # deferred: fast CLI start

    if args.service not in SERVICES:
        print(f"mlpipe: no service {args.service!r}; one of {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    path = log_file(get_settings(), args.service)
    if not path.exists():
        print(f"mlpipe: {path} does not exist (has {args.service} run yet?)", file=sys.stderr)
        return 1
    with path.open(errors="replace") as fh:
        sys.stdout.writelines(deque(fh, maxlen=args.lines))
        while args.follow:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.5)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Trigger a DAG with `--conf`, follow the run to its end (unless `--no-wait`)."""
    from ml.alerts import airflow_url  # deferred: fast CLI start
    from ml.dev.stack.auth import airflow_client  # deferred: fast CLI start
    from ml.settings import get_settings  # deferred: fast CLI start

    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        print(f"mlpipe run: --conf is not JSON ({exc}): {args.conf!r}", file=sys.stderr)
        return 2
    if not isinstance(conf, dict):
        print(f"mlpipe run: --conf must be a JSON object, not {args.conf!r}", file=sys.stderr)
        return 2
    client = airflow_client(get_settings())
    if client.dag(args.dag_id) is None:
        print(f"mlpipe run: no DAG {args.dag_id!r} in Airflow", file=sys.stderr)
        return 1
    run_id = client.trigger(args.dag_id, conf)
    print(f"{args.dag_id} {run_id}  {airflow_url(args.dag_id, run_id)}")
    if args.no_wait:
        return 0
    run = client.wait_for_run(args.dag_id, run_id, args.timeout)
    print(f"{args.dag_id} {run_id}: {run['state']}")
    return 0 if run["state"] == "success" else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml.dev import demo  # deferred: fast CLI start

    summary = demo.run(date_from=args.date_from, date_to=args.date_to, timeout=args.timeout)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(demo.format_summary(summary))
    return 0 if summary.ok else 1


def _cmd_contract(args: argparse.Namespace) -> int:
    from ml.contracts import ContractError, load_contract  # deferred: fast CLI start
    from ml.validation.rules import describe_rule, rule_specs  # deferred: fast CLI start

    bad = 0
    for name in args.files:
        try:
            contract = load_contract(name)
            specs = rule_specs(contract)
        except ContractError as exc:
            print(f"ERROR {exc}", file=sys.stderr)
            bad += 1
            continue
        policy = contract.policy
        print(
            f"{contract.path}: OK  dataset {contract.dataset}, contract hash {contract.hash}, "
            f"{len(specs)} rules, failure policy {policy.mode} (on_failure {policy.on_failure}"
            + (
                f", max_bad_fraction {policy.max_bad_fraction:g})"
                if policy.mode == "quarantine_rows"
                else ")"
            )
        )
        if contract.pii:
            print(f"  pii: {', '.join(f'{c} -> {a}' for c, a in contract.pii.items())}")
        width = max(len(s.rule) for s in specs)
        for spec in specs:
            print(f"  {spec.rule:<{width}}  {describe_rule(spec)}")
    return 1 if bad else 0


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from ml import quarantine  # deferred: fast CLI start

    try:
        if args.action == "list":
            items = quarantine.held(args.dataset, include_done=args.all)
            if args.json:
                print(json.dumps([i.to_dict() for i in items], indent=2, default=str))
                return 0
            if not items:
                print("nothing held in quarantine")
            for i in items:
                kept = f", {i.validated_rows} good rows went on" if i.validated_rows else ""
                print(f"{i.ref}  [{i.status}]  {i.rows} rows ({i.kind}{kept})")
                print(f"    reason: {i.reason}")
                print(f"    failed: {', '.join(i.failed_rules) or '-'}")
                print(f"    report: {i.report or '-'}")
            return 0
        if args.action == "show":
            info = quarantine.summary(args.ref)
            if args.json:
                print(json.dumps(info, indent=2, default=str))
                return 0
            print(f"{info['ref']}  [{info['status']}]  {info['rows']} rows ({info['kind']})")
            print(f"  reason:   {info['reason']}")
            print(f"  from:     {', '.join(info['upstream'])}")
            print(f"  report:   {info['report']}  (HTML: {info['report_html'] or '-'})")
            for r in info["failed"]:
                count = r["unexpected_count"]
                what = (
                    f"{count} unexpected"
                    if count is not None
                    else f"observed {r['observed_value']!r}"
                )
                print(f"  FAILED {r['rule']}: {what}" + (f"; {r['error']}" if r["error"] else ""))
                if r["sample"]:
                    print(f"         sample: {json.dumps(r['sample'], default=str)}")
            if info["action"]:
                print(
                    f"  {info['status']} by {info['action'].get('by')} at {info['action'].get('at')}"
                )
            return 0
        if args.action == "release":
            record = quarantine.release(
                args.ref, by=args.by, note=args.note, contract=args.contract
            )
            print(f"released {record['ref']} ({record['rows']} rows) -> {record['validated']}")
            print(f"audit: {record['audit']}")
            return 0
        if args.action == "drop":
            record = quarantine.drop(args.ref, by=args.by, reason=args.note)
            print(f"dropped {record['ref']} ({record['rows']} rows; kept in storage)")
            print(f"audit: {record['audit']}")
            return 0
    except quarantine.QuarantineError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.action)


def _format_record(r: dict) -> str:
    what = {"promote": "PROMOTED", "refuse": "refused", "rollback": "ROLLBACK"}.get(
        r["action"], r["action"]
    )
    forced = " (forced)" if r.get("forced") else ""
    head = (
        f"{r['at']}  {what}{forced}  v{r['version']}  champion "
        f"{r.get('previous_champion') or '-'} -> {r.get('champion_after') or '-'}  by {r.get('by')}"
    )
    lines = [head, f"    reason: {r['reason']}"]
    if r.get("eval_snapshot_hash"):
        lines.append(
            f"    snapshot: {r['eval_snapshot']} ({r['eval_rows']} rows, "
            f"sha256 {r['eval_snapshot_hash'][:16]})"
        )
    return "\n".join(lines)


def _champion_event(model_name: str, record: dict) -> str:
    """Tell Airflow that `champion` moved (its consumers, batch scoring, start once)."""
    from ml.assets import CHAMPION, champion_event, model_alias  # deferred: fast CLI start
    from ml.dev.stack.auth import airflow_client  # deferred: fast CLI start
    from ml.settings import get_settings  # deferred: fast CLI start

    uri = model_alias(model_name, CHAMPION).uri
    airflow_client(get_settings()).create_asset_event(uri, champion_event(model_name, record))
    return uri


def _cmd_model(args: argparse.Namespace) -> int:
    from ml import model_versions, registry  # deferred: fast CLI start

    try:
        if args.action == "history":
            records = registry.history(args.name)
            if args.json:
                print(json.dumps(records, indent=2, default=str))
                return 0
            if not records:
                print(f"no promotion recorded for {args.name}")
            for r in records:
                print(_format_record(r))
            aliases = {
                a: model_versions.alias_version(args.name, a)
                for a in (
                    model_versions.CHAMPION,
                    model_versions.PREVIOUS,
                    model_versions.CHALLENGER,
                )
            }
            print("aliases: " + ", ".join(f"{a}={v or '-'}" for a, v in aliases.items()))
            return 0
        if args.action == "rollback":
            record = registry.rollback(args.name, by=args.by or "", reason=args.reason)
            print(
                f"rolled {args.name} back: champion {record['previous_champion']} -> "
                f"{record['champion_after']} (previous is now {record['previous_after'] or '-'})"
            )
            print(f"audit: {record['audit_record']}")
            if args.no_trigger:
                return 0
            try:
                uri = _champion_event(args.name, record)
            except Exception as exc:  # the rollback stands; say how to score by hand
                print(
                    f"ERROR could not raise the champion asset event in Airflow ({exc}); "
                    "trigger batch_score_<dataset> by hand",
                    file=sys.stderr,
                )
                return 1
            print(f"asset event raised on {uri}: batch scoring starts")
            return 0
    except registry.RegistryError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.action)


def _cmd_lineage(args: argparse.Namespace) -> int:
    from ml import lineage, storage  # deferred: fast CLI start

    try:
        tree = lineage.downstream(args.ref) if args.raw else lineage.upstream(args.ref)
    except (lineage.LineageError, storage.BatchNotFoundError, ValueError) as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(tree, indent=2, default=str))
    else:
        print(lineage.format_downstream(tree) if args.raw else lineage.format_upstream(tree))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlpipe")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_stack,
        _add_demo,
        _add_run,
        _add_contract,
        _add_quarantine,
        _add_model,
        _add_lineage,
    ):
        add(sub)
    return parser


def _add_stack(sub: argparse._SubParsersAction) -> None:
    p_stack = sub.add_parser("stack", help="local services: S3 API, MLflow, Dask, Airflow")
    actions = p_stack.add_subparsers(dest="action", required=True)
    actions.add_parser("up", help="start what is not running, wait until healthy")
    actions.add_parser("status", help="each service: running or stopped, pid, URL")
    actions.add_parser("down", help="stop every service of the stack")
    p_logs = actions.add_parser("logs", help="the last lines of a service's log")
    p_logs.add_argument("service", help="s3, mlflow, dask-scheduler, airflow-scheduler, ...")
    p_logs.add_argument("-n", "--lines", type=int, default=50, help="how many (default 50)")
    p_logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p_stack.set_defaults(func=_cmd_stack)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p_run = sub.add_parser("run", help="trigger a DAG and follow its run to the end")
    p_run.add_argument("dag_id", help="e.g. ingest_flights, train_flights")
    p_run.add_argument(
        "--conf", default="{}", help="the run's Params as JSON, e.g. '{\"epochs\": 3}'"
    )
    p_run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
    p_run.add_argument("--no-wait", action="store_true", help="trigger only")
    p_run.set_defaults(func=_cmd_run)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p_demo = sub.add_parser("demo", help="stack up, run the whole pipeline through Airflow")
    p_demo.add_argument("--date-from", default="2013-01-01", help="first day (YYYY-MM-DD)")
    p_demo.add_argument("--date-to", default="2013-01-10", help="last day, included")
    p_demo.add_argument("--timeout", type=float, default=480.0, help="seconds to wait for runs")
    p_demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_demo.set_defaults(func=_cmd_demo)


def _add_contract(sub: argparse._SubParsersAction) -> None:
    p_contract = sub.add_parser("contract", help="data contracts: check them, list their rules")
    contract_sub = p_contract.add_subparsers(dest="action", required=True)
    p_check = contract_sub.add_parser("check", help="check contract files, print their rules")
    p_check.add_argument("files", nargs="+", metavar="FILE", help="contract file or dataset name")
    p_contract.set_defaults(func=_cmd_contract)


def _add_quarantine(sub: argparse._SubParsersAction) -> None:
    p_q = sub.add_parser("quarantine", help="batches held back by validation: list, show, act")
    q_sub = p_q.add_subparsers(dest="action", required=True)
    p_list = q_sub.add_parser("list", help="batches held back (all datasets, or one)")
    p_list.add_argument("dataset", nargs="?", help="only this dataset (default: all)")
    p_list.add_argument("--all", action="store_true", help="also released and dropped ones")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_show = q_sub.add_parser("show", help="the report summary of a quarantined batch")
    p_show.add_argument("ref", help="s3://quarantine/<dataset>/<partition>/<batch_id> (any zone)")
    p_show.add_argument("--json", action="store_true", help="print JSON")
    for action, helptext in (
        ("release", "the batch is fine: copy it to validated, with an audit record"),
        ("drop", "the batch is not wanted: mark it dropped, with an audit record (no delete)"),
    ):
        p = q_sub.add_parser(action, help=helptext)
        p.add_argument("ref", help="s3://quarantine/<dataset>/<partition>/<batch_id>")
        p.add_argument("--by", help="who decides (default: the current user)")
        p.add_argument("--note", default="", help="why")
        if action == "release":
            p.add_argument("--contract", help="contract file (default: the dataset's)")
    p_q.set_defaults(func=_cmd_quarantine)


def _add_model(sub: argparse._SubParsersAction) -> None:
    p_model = sub.add_parser("model", help="registered models: promotion history, rollback")
    m_sub = p_model.add_subparsers(dest="action", required=True)
    p_hist = m_sub.add_parser("history", help="the promotion audit log of a model, oldest first")
    p_hist.add_argument("name", help="registered model name (e.g. flights_delay)")
    p_hist.add_argument("--json", action="store_true", help="print JSON")
    p_rb = m_sub.add_parser(
        "rollback", help="move 'champion' back to 'previous' (audited; scoring starts again)"
    )
    p_rb.add_argument("name", help="registered model name (e.g. flights_delay)")
    p_rb.add_argument("--by", help="who decides (default: the current user)")
    p_rb.add_argument("--reason", default="", help="why")
    p_rb.add_argument(
        "--no-trigger", action="store_true", help="do not raise the champion asset event"
    )
    p_model.set_defaults(func=_cmd_model)


def _add_lineage(sub: argparse._SubParsersAction) -> None:
    p_lin = sub.add_parser(
        "lineage", help="a predictions batch back to its sources, or a raw batch forward"
    )
    p_lin.add_argument("ref", help="s3://predictions/... (or, with --raw, s3://raw/...)")
    p_lin.add_argument("--raw", action="store_true", help="list everything downstream of it")
    p_lin.add_argument("--json", action="store_true", help="print JSON")
    p_lin.set_defaults(func=_cmd_lineage)


def main(argv: list[str] | None = None) -> int:
    from ml.settings import PlaceholderSecret, get_settings  # deferred: fast CLI start

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Placeholder secrets stop every command but the ones that only look or clean up.
    if not (args.command == "stack" and args.action in ("status", "down", "logs")):
        try:
            get_settings().check_secrets()
        except PlaceholderSecret as exc:
            print(f"mlpipe: {exc}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line and where to look, never a raw traceback
        if args.verbose:
            raise
        print(f"mlpipe {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"  {_where_to_look()} (-v shows the traceback)", file=sys.stderr)
        return 1


def _where_to_look() -> str:
    from ml.dev.stack.layout import log_dir  # deferred: fast CLI start
    from ml.settings import get_settings  # deferred: fast CLI start

    try:
        logs = log_dir(get_settings())
    except Exception:  # settings themselves broken: the message above says why
        return "see the message above"
    return f"service logs: {logs} (mlpipe stack logs SERVICE)"


if __name__ == "__main__":
    sys.exit(main())
