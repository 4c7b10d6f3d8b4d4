"""`mlpipe`: the command line of the pipeline (local stack, demo)."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _cmd_stack(args: argparse.Namespace) -> int:
    from ml import stack

    if args.action == "up":
        urls = stack.up()
        for name, url in urls.items():
            print(f"{name:<12} {url}")
        return 0
    if args.action == "status":
        rows = stack.status()
        for row in rows:
            print(f"{row.name:<22} {row.state:<8} pid={row.pid or '-':<8} {row.url or ''}")
        return 0 if all(r.state == "running" for r in rows) else 1
    if args.action == "down":
        stack.down()
        print("stack is down")
        return 0
    raise AssertionError(args.action)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml import demo

    summary = demo.run(date_from=args.date_from, date_to=args.date_to, timeout=args.timeout)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(demo.format_summary(summary))
    return 0 if summary.get("ok") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p_stack = sub.add_parser("stack", help="local services: S3 API, MLflow, Dask, Airflow")
    p_stack.add_argument("action", choices=["up", "status", "down"])
    p_stack.set_defaults(func=_cmd_stack)

    p_demo = sub.add_parser("demo", help="stack up, run the whole pipeline through Airflow")
    p_demo.add_argument("--date-from", default="2013-01-01")
    p_demo.add_argument("--date-to", default="2013-01-10")
    p_demo.add_argument("--timeout", type=float, default=480.0, help="seconds to wait for runs")
    p_demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
