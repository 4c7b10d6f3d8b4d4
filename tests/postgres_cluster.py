"""A throwaway PostgreSQL cluster of a test's own (`initdb` + `pg_ctl`), which the test may stop
and start again under the services that use it, unlike the machine's shared server.

Run as the `postgres` user when the tests run as root (`initdb` refuses root), in a folder of
its own under the system temp dir (pytest's are private to the user that runs the tests).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port


def _binary(name: str) -> str | None:
    """A PostgreSQL server binary: Debian's versioned folder first (its `pg_ctl` wrapper in
    /usr/bin picks a cluster, not a data folder), then the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> bool:
    return all(_binary(n) for n in ("initdb", "pg_ctl"))


@dataclass
class Cluster:
    data: Path
    port: int
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 120) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*self.run_as, _binary("pg_ctl"), "-D", str(self.data), "-o", options, *args],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def restart(self) -> None:
        """Stop at once (open connections are cut, as in a crash of the server's host) and
        start again on the same port and data."""
        self.pg_ctl("-m", "immediate", "-w", "restart", "-l", str(self.data / "server.log"))


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A running cluster on a free loopback port, trust auth for `postgres`; removed after."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-pg-"))
    data = folder / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(data, free_port(), run_as)
    try:
        subprocess.run(
            [
                *run_as,
                _binary("initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.pg_ctl("-w", "start", "-l", str(data / "server.log"))
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, FileNotFoundError):
            cluster.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
