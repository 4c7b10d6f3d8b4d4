"""The processes of the local stack: start each in a session of its own with a pid file and a
log, tell ours from strangers, wait until healthy, and stop them by process group.

`stop` also sweeps stragglers: processes still in one of the services' sessions (Airflow task
runners put themselves into process groups of their own), descendants, and processes whose
environment carries `MLPIPE_STACK_OWNER=<state>` (everything we start gets it; it is not
reliable alone, since `setproctitle`, used by Dask and Airflow, clobbers `/proc/<pid>/environ`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import psutil

from ml.dev.stack.layout import (
    OWNER_ENV,
    SERVICE_ENV,
    StackError,
    log_file,
    pid_file,
    run_dir,
)
from ml.dev.stack.services import listen_address, service_spec
from ml.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 40


@dataclass
class Launched:
    """A process this call of `up` started (or found running)."""

    name: str
    pid: int
    started_at: float
    popen: subprocess.Popen | None = field(default=None, repr=False)


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """One `up`/`down` at a time per state folder."""
    path = run_dir(settings) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Starting


def child_env(settings: Settings, name: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process of the stack: ours, the settings', its own, and the marks."""
    env = {**os.environ, **settings.service_env(), **extra}
    env[OWNER_ENV] = str(settings.state_path)
    env[SERVICE_ENV] = name
    env["PYTHONUNBUFFERED"] = "1"
    # Console scripts of this environment first, whatever the caller's PATH.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def _has_mark(proc: psutil.Process, settings: Settings) -> bool:
    """Whether a process's environment carries this stack's mark."""
    try:
        environ = proc.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
        return False
    return environ.get(OWNER_ENV) == str(settings.state_path)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a live process of ours named by the pid file; a stale pid file is removed."""
    path = pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        # Ours: a live session leader of our user, created before its pid file was written
        # (a recycled pid belongs to a younger process).
        proc = psutil.Process(pid)
        ours = (
            _alive(proc)
            and os.getsid(pid) == pid
            and os.getpgid(pid) == pid
            and proc.uids().real == os.getuid()
            and proc.create_time() <= path.stat().st_mtime + 1.0
        )
    except (psutil.Error, OSError):
        ours = False
    if not ours:
        log.debug("removing stale pid file %s (pid %s)", path, pid)
        path.unlink(missing_ok=True)
        return None
    return pid


def open_log(settings: Settings, name: str, argv: list[str]) -> IO[bytes]:
    """A service's log, opened for appending, with a header line naming the command."""
    path = log_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("ab")
    fh.write(f"\n===== {datetime.now().isoformat(timespec='seconds')} {' '.join(argv)}\n".encode())
    fh.flush()
    return fh


def spawn(
    settings: Settings, name: str, argv: list[str], extra_env: dict[str, str], cwd: Path
) -> subprocess.Popen:
    """Start `argv` in a session of its own, output to the log of `name`."""
    with open_log(settings, name, argv) as logfh:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env(settings, name, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _port_taken(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _start(settings: Settings, name: str) -> Launched:
    address = listen_address(settings, name)
    if address is not None and _port_taken(*address):
        raise StackError(
            f"cannot start {name}: {address[0]}:{address[1]} is already in use by a process "
            f"this stack did not start (no live pid file {pid_file(settings, name)}); "
            "stop it or change the URL in the settings"
        )
    spec = service_spec(settings, name)
    spec.cwd.mkdir(parents=True, exist_ok=True)
    popen = spawn(settings, name, spec.argv, spec.env, spec.cwd)
    path = pid_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{popen.pid}\n")
    tmp.replace(path)
    log.info("started %s (pid %d), log %s", name, popen.pid, log_file(settings, name))
    return Launched(name, popen.pid, time.time(), popen)


def ensure_started(settings: Settings, name: str) -> Launched:
    """The running process of a service, started when there is none."""
    pid = running_pid(settings, name)
    if pid is not None:
        log.info("%s is already running (pid %d)", name, pid)
        return Launched(name, pid, psutil.Process(pid).create_time())
    return _start(settings, name)


# --------------------------------------------------------------------------------------------
# Waiting


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def fail(settings: Settings, name: str, why: str) -> StackError:
    """The error to raise for a service: why, and the tail of its log when it has one."""
    path = log_file(settings, name)
    if not path.exists():  # not a process of ours (an external endpoint)
        log.error("%s %s", name, why)
        return StackError(f"{name} {why}")
    tail = _log_tail(path)
    log.error("%s %s; last lines of %s:\n%s", name, why, path, tail)
    return StackError(f"{name} {why}; see its log {path}\n--- last lines ---\n{tail}")


def _exited(launched: Launched) -> int | None:
    """The exit code if the process ended, else None."""
    if launched.popen is not None:
        return launched.popen.poll()
    try:
        return None if _alive(psutil.Process(launched.pid)) else -1
    except psutil.NoSuchProcess:
        return -1


def wait_healthy(
    settings: Settings,
    launched: list[Launched],
    check: Callable[[], object],
    deadline: float,
    what: str | Callable[[], str],
) -> object:
    """Poll `check()` until it returns something truthy; fail early if a process exits.

    On timeout the error names `what` (or what `what()` returns) and the tail of its log.
    """
    last_error: object = None
    while True:
        for item in launched:
            code = _exited(item)
            if code is not None:
                raise fail(settings, item.name, f"exited with code {code} while starting")
        try:
            result = check()
        except Exception as exc:  # not up yet
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            name = what() if callable(what) else what
            raise fail(settings, name, f"did not become healthy in time (last check: {last_error})")
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# Stopping


def stop_sessions(settings: Settings, leaders: dict[str, int], include_marked: bool) -> None:
    """Stop the sessions of some services (name -> session leader pid) and what they started."""
    for name, pid in leaders.items():
        log.info("stopping %s (pid %d)", name, pid)
    sessions = set(leaders.values())
    victims = stack_processes(settings, sessions, include_marked)
    groups = set(sessions)
    for proc in victims:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    terminate(victims, groups)


def terminate(victims: list[psutil.Process], groups: set[int]) -> None:
    """SIGTERM groups and processes; SIGKILL what is left after `STOP_TIMEOUT` seconds."""
    _signal_all(groups, victims, signal.SIGTERM)
    _, alive = psutil.wait_procs(victims, timeout=STOP_TIMEOUT)
    if alive:
        log.warning("killing %d process(es) that ignored SIGTERM: %s", len(alive), describe(alive))
        _signal_all(groups, alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)


def describe(procs: Iterable[psutil.Process]) -> str:
    """Pids and command lines, for a log line."""
    parts = []
    for proc in procs:
        try:
            parts.append(f"{proc.pid} ({' '.join(proc.cmdline())[:80]})")
        except psutil.Error:
            parts.append(str(proc.pid))
    return ", ".join(parts)


def stack_processes(
    settings: Settings, sessions: set[int], include_marked: bool
) -> list[psutil.Process]:
    """Live processes of the given sessions, their descendants, and (optionally) marked ones."""
    me, uid = os.getpid(), os.getuid()
    found: dict[int, psutil.Process] = {}
    for leader in sessions:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(leader)
            for member in [proc, *proc.children(recursive=True)]:
                found[member.pid] = member
    for proc in psutil.process_iter():
        if proc.pid == me or proc.pid in found:
            continue
        try:
            if proc.uids().real != uid:
                continue
            in_session = os.getsid(proc.pid) in sessions
        except (psutil.Error, OSError):
            continue
        if in_session or (include_marked and _has_mark(proc, settings)):
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
    return [p for p in found.values() if p.pid != me and _alive(p)]


def _signal_all(groups: set[int], procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    """Signal each group once, then each process outside those groups, once.

    Never twice: a second SIGTERM while Airflow's scheduler shuts its executor down can hang it.
    """
    own_group = os.getpgrp()
    signalled = set()
    for pgid in groups:
        if pgid == own_group:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
            signalled.add(pgid)
    for proc in procs:
        try:
            if os.getpgid(proc.pid) in signalled:
                continue
        except OSError:
            continue
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
