"""One pipeline call in a process of its own that stops at a chosen point, for fault injection.

    python -m tests.reliability.pause <call> <json arguments>

With `PAUSE_AT=<module>:<function>` the function is wrapped: on its first call the process
touches `$PAUSE_READY` and waits until `$PAUSE_GO` exists (a test SIGKILLs it there, or stops a
service and lets it go on into the fault). `MLPIPE_TEST_CONTRACTS_DIR` replaces the contracts
folder. The call's result is printed as JSON on the last line of stdout; on an error, its
class, message and what the tasks' retry policy does with it (`retry`), and the exit code is 1.

Calls: `build` (features), `train`, `score`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def pause_at(spec: str, ready: Path, go: Path) -> None:
    module_name, name = spec.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    first = [True]

    def paused(*args, **kwargs):
        if first[0]:
            first[0] = False
            ready.touch()
            while not go.exists():
                time.sleep(0.05)
        return real(*args, **kwargs)

    setattr(module, name, paused)


def build(args: dict[str, Any]) -> dict:
    from ml.features.build import build_features

    return {"ref": build_features(args["dataset"]).ref}


def train(args: dict[str, Any]) -> dict:
    from ml.training.run import train as train_network

    result = train_network(args["ref"], args["params"], task_instance=args["task_instance"])
    return {"version": result.version, "run_id": result.run_id}


def score(args: dict[str, Any]) -> dict:
    from ml.score import score as score_day

    scored = score_day(args["dataset"], args["day"], version=args["version"])
    return {"ref": scored.ref, "rows": scored.rows}


def retry_action(exc: BaseException) -> str:
    """What the tasks' retry policy (`dags/_mlpipe.py`) does with `exc` on a first try: `FAIL`,
    or the name of the action that retries."""
    dags = str(Path(__file__).resolve().parents[2] / "dags")
    sys.path.insert(0, dags)
    try:
        import _mlpipe
    finally:
        sys.path.remove(dags)
    return _mlpipe.RETRY_POLICY.evaluate(exc, 1, 3).action.name


CALLS = {"build": build, "train": train, "score": score}


def main() -> None:
    call, args = sys.argv[1], json.loads(sys.argv[2])
    if os.environ.get("MLPIPE_TEST_CONTRACTS_DIR"):
        from ml import contracts

        contracts.CONTRACTS_DIR = Path(os.environ["MLPIPE_TEST_CONTRACTS_DIR"])
    if os.environ.get("PAUSE_AT"):
        pause_at(
            os.environ["PAUSE_AT"], Path(os.environ["PAUSE_READY"]), Path(os.environ["PAUSE_GO"])
        )
    try:
        out = CALLS[call](args)
    except Exception as exc:
        action = retry_action(exc)
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)[:500], "retry": action}))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
