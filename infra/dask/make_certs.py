"""Make the TLS material of the compose stack's Dask cluster: a CA and one certificate per role.

    python make_certs.py OUTPUT_DIR [--days N]

Writes ca.pem, and <role>.pem / <role>-key.pem for the roles scheduler, worker and client, each
signed by the CA (keys mode 0600). Dask uses them for mutual TLS: every side presents its
certificate and accepts only peers signed by this CA, so nothing without a certificate from this
volume can submit work to the scheduler. Run by the `dask-certs` service of docker-compose.yml;
does nothing when ca.pem already exists (delete the volume to make new ones). The CA's private
key is not kept: no new certificate can be signed with it later.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Role -> DNS names its certificate carries (Dask does not check host names; for other tools).
ROLES = {
    "scheduler": ["dask-scheduler", "localhost"],
    "worker": ["dask-worker", "localhost"],
    "client": ["mlpipe-client"],
}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlpipe"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make(out: Path, days: int = 825) -> bool:
    """Write the CA and role certificates into `out`; False when they already exist."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.pem").exists():
        return False
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("mlpipe dask CA"))
        .issuer_name(_name("mlpipe dask CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA384())
    )
    for role, dns in ROLES.items():
        key = ec.generate_private_key(ec.SECP384R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"mlpipe dask {role}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA384())
        )
        _write(out / f"{role}-key.pem", _key_pem(key), 0o600)
        _write(out / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # last: its presence means the set is complete
    _write(out / "ca.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--days", type=int, default=825)
    args = parser.parse_args()
    made = make(args.out, args.days)
    print(f"dask TLS material {'written to' if made else 'already in'} {args.out}")


if __name__ == "__main__":
    main()
