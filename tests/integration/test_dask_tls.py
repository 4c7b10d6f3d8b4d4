"""The compose stack's Dask runs mutual TLS with the certificates infra/dask/make_certs.py makes:
a client configured as compose configures the Airflow workers (Dask config from the
environment, no code change) computes; a client without a certificate of the CA, or over plain
tcp://, is refused. Real scheduler and worker, in this process."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import dask
import pytest
import yaml
from distributed import Client, Scheduler, Worker
from distributed.security import Security

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CERTS_IN_COMPOSE = "/opt/mlpipe/certs"


def _make_certs(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_certs", ROOT / "infra/dask/make_certs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.make(out) is True
    assert module.make(out) is False  # kept, never remade
    assert (out / "client-key.pem").stat().st_mode & 0o077 == 0  # keys: owner only


def _compose_dask_config(certs: Path) -> dict:
    """Dask's configuration as the compose services get it (x-dask-tls), certs moved to `certs`."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {
        k: str(v).replace(CERTS_IN_COMPOSE, str(certs)) for k, v in compose["x-dask-tls"].items()
    }
    return _flat(dask.config.collect_env(env))


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_compose_dask_accepts_only_clients_with_a_certificate_of_its_ca(tmp_path):
    certs = tmp_path / "certs"
    _make_certs(certs)
    config = _compose_dask_config(certs)
    other = tmp_path / "other"
    _make_certs(other)

    def role(name: str) -> dict:
        return {
            f"tls_{name}_cert": str(certs / f"{name}.pem"),
            f"tls_{name}_key": str(certs / f"{name}-key.pem"),
        }

    ca = {"tls_ca_file": str(certs / "ca.pem"), "require_encryption": True}

    async def scenario() -> None:
        # scheduler and worker as their compose command lines start them (--tls-* options)
        async with Scheduler(
            protocol="tls",
            host="127.0.0.1",
            port=0,
            dashboard_address=":0",
            security=Security(**ca, **role("scheduler")),
        ) as scheduler:
            address = scheduler.address
            assert address.startswith("tls://")
            async with Worker(address, nthreads=1, security=Security(**ca, **role("worker"))):
                # what an Airflow worker does: Client(DASK_SCHEDULER_ADDRESS) with the Dask
                # configuration of its environment, nothing else
                with dask.config.set(config):
                    async with Client(address, asynchronous=True) as client:
                        assert await client.submit(lambda x: x + 1, 41) == 42
                # a certificate from another CA (a stranger's, or one made by a second
                # dask-certs volume): the handshake fails
                stranger = {
                    "tls_ca_file": str(other / "ca.pem"),
                    "tls_client_cert": str(other / "client.pem"),
                    "tls_client_key": str(other / "client-key.pem"),
                    "require_encryption": True,
                }
                with pytest.raises((OSError, TimeoutError)):
                    await Client(
                        address, security=Security(**stranger), asynchronous=True, timeout="3s"
                    )
                # plain tcp to the TLS port: refused
                with pytest.raises((OSError, TimeoutError)):
                    await Client(
                        address.replace("tls://", "tcp://"), asynchronous=True, timeout="3s"
                    )

    asyncio.run(scenario())
