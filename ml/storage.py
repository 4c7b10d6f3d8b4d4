"""Object storage: S3 clients from settings, buckets, and immutable batches committed by manifest.

A batch is parquet parts under `<bucket>/<dataset>/<partition>/<batch_id>/<attempt>/`, visible
only through its `_manifest.json`, written last: the commit (`ml.commit`). Readers go through
manifests, never bare listings, so a half-written attempt is never data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ml import commit
from ml.commit import MANIFEST, MANIFEST_VERSION, BatchIntegrityError, Manifest
from ml.errors import BadInputError, NotFoundError
from ml.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    import s3fs
    from minio import Minio

log = logging.getLogger(__name__)

__all__ = ["MANIFEST", "MANIFEST_VERSION", "BatchIntegrityError", "Manifest"]
Partitions = str | Iterable[str] | None  # a partition name, several, or None for all


class BatchNotFoundError(NotFoundError):
    """No committed batch matches the request."""


class BadBatchRef(BadInputError):
    """A string that is not a batch reference (`s3://bucket/dataset/partition/batch_id`)."""


def filesystem(settings: Settings | None = None) -> s3fs.S3FileSystem:
    """An s3fs filesystem on the configured endpoint (cached per endpoint and keys by s3fs)."""
    import s3fs

    return s3fs.S3FileSystem(**(settings or get_settings()).s3_storage_options())


def minio_client(settings: Settings | None = None) -> Minio:
    """A MinIO SDK client on the configured endpoint (bucket administration)."""
    from minio import Minio

    s = settings or get_settings()
    url = urlsplit(s.s3_endpoint_url)
    options = s.s3_storage_options()
    return Minio(
        url.netloc,
        access_key=options["key"],
        secret_key=options["secret"],
        region=s.aws_region,
        secure=url.scheme == "https",
    )


def ensure_buckets(settings: Settings | None = None) -> list[str]:
    """Create every zone bucket with versioning on; return those that were created."""
    from minio.versioningconfig import ENABLED, VersioningConfig

    s = settings or get_settings()
    client = minio_client(s)
    created = []
    for bucket in s.buckets:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
            created.append(bucket)
        client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    if created:
        log.info("created buckets %s on %s", ", ".join(created), s.s3_endpoint_url)
    return created


def new_batch_id(now: datetime | None = None) -> str:
    """A fresh, time-sortable batch id (an attempt id's form, without its `a-`)."""
    return commit.new_attempt_id(now).removeprefix("a-")


def content_hash(df: pd.DataFrame) -> str:
    """A hash of a frame's values, column names and order (stable across processes)."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in df.columns]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _schema(df: pd.DataFrame) -> dict[str, str]:
    return {str(c): str(t) for c, t in df.dtypes.items()}


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def write_batch(
    df: pd.DataFrame,
    zone: str,
    dataset: str,
    partition: str,
    *,
    batch_id: str | None = None,
    rows_per_part: int = 500_000,
    settings: Settings | None = None,
    **provenance: Any,
) -> Manifest:
    """Write `df` as a new committed batch: parquet parts under a fresh attempt, the manifest
    last. `batch_id` (default a fresh one): an id derived from the inputs
    (`commit.idempotency_key`) makes two attempts of one task commit one batch; the loser gets
    the winner's manifest back.

    `provenance`: `source`, `contract_hash`, `upstream` (batch refs), `extra`, `data_time`.
    """
    s = settings or get_settings()
    fs = filesystem(s)
    batch_id = batch_id or new_batch_id()
    attempt = commit.new_attempt_id()
    prefix = f"{s.bucket(zone)}/{dataset}/{partition}/{batch_id}"
    parts = []
    for i, start in enumerate(range(0, max(len(df), 1), rows_per_part)):
        chunk = df.iloc[start : start + rows_per_part]
        data = _parquet_bytes(chunk)
        name = f"{attempt}/part-{i:05d}.parquet"
        fs.pipe_file(f"{prefix}/{name}", data, mode="create")  # never a rewrite
        parts.append(
            {"name": name, "rows": len(chunk), "bytes": len(data), "sha256": _sha256(data)}
        )
    return _commit_manifest(
        s,
        zone,
        dataset,
        partition,
        batch_id,
        parts,
        _schema(df),
        attempt=attempt,
        content_hash=content_hash(df),
        **provenance,
    )


def commit_parts(
    zone: str,
    dataset: str,
    partition: str,
    batch_id: str,
    *,
    attempt: str = "",
    settings: Settings | None = None,
    **provenance: Any,
) -> Manifest:
    """Commit parquet parts that another writer (e.g. Dask) put under an attempt's prefix
    (`<batch prefix>/<attempt>/`); `replaces`, `files`, `data_time` as in `_commit_manifest`."""
    import pyarrow.parquet as pq

    s = settings or get_settings()
    fs = filesystem(s)
    prefix = f"{s.bucket(zone)}/{dataset}/{partition}/{batch_id}"
    where = f"{prefix}/{attempt}" if attempt else prefix
    fs.invalidate_cache(where)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(where) if p.endswith(".parquet"))
    if not names:
        raise BatchNotFoundError(f"no parquet parts under s3://{where} to commit")
    parts, schema = [], {}
    for name in names:
        rel = f"{attempt}/{name}" if attempt else name
        info = fs.info(f"{prefix}/{rel}")
        with fs.open(f"{prefix}/{rel}", "rb") as fh:
            pf = pq.ParquetFile(fh)
            schema = schema or {f.name: str(f.type) for f in pf.schema_arrow}
            rows = pf.metadata.num_rows
        parts.append(
            {"name": rel, "rows": rows, "bytes": info["size"], "etag": info.get("ETag", "")}
        )
    return _commit_manifest(
        s, zone, dataset, partition, batch_id, parts, schema, attempt=attempt, **provenance
    )


def _commit_manifest(
    s: Settings,
    zone: str,
    dataset: str,
    partition: str,
    batch_id: str,
    parts: list[dict[str, Any]],
    schema: dict[str, str],
    *,
    attempt: str = "",
    source: str = "",
    content_hash: str = "",
    contract_hash: str = "",
    upstream: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    data_time: str = "",
    files: list[str] | None = None,
    replaces: Manifest | bool | None = None,
) -> Manifest:
    """The manifest of an attempt, committed (see `ml.commit.commit` for `replaces`): a new
    batch unless `replaces`; `data_time` defaults to now (a raw batch's ingest time)."""
    now = datetime.now(UTC).isoformat()
    manifest = Manifest(
        zone=zone,
        bucket=s.bucket(zone),
        dataset=dataset,
        partition=partition,
        batch_id=batch_id,
        parts=parts,
        rows=sum(p["rows"] for p in parts),
        schema=schema,
        source=source,
        content_hash=content_hash,
        contract_hash=contract_hash,
        upstream=list(upstream or []),
        extra=dict(extra or {}),
        created_at=now,
        attempt=attempt,
        data_time=data_time or now,
        files=list(files or []),
    )
    committed = commit.commit(filesystem(s), manifest, replaces=replaces)
    if committed is manifest:
        log.info("committed %s rows in %s part(s) to %s", manifest.rows, len(parts), manifest.ref)
    return committed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_ref(ref: str) -> tuple[str, str, str, str]:
    """`s3://bucket/dataset/partition/batch_id` -> its four parts."""
    parts = ref.removeprefix("s3://").strip("/").split("/")
    if len(parts) != 4:
        raise BadBatchRef(
            f"not a batch reference (s3://bucket/dataset/partition/batch_id): {ref!r}"
        )
    return parts[0], parts[1], parts[2], parts[3]


def ref_in_zone(ref: str, zone: str, settings: Settings | None = None) -> str:
    """The same batch key in another zone (raw -> validated keeps dataset/partition/batch id)."""
    _, dataset, partition, batch_id = parse_ref(ref)
    return f"s3://{(settings or get_settings()).bucket(zone)}/{dataset}/{partition}/{batch_id}"


def committed_in_zone(refs: list[str], zone: str, settings: Settings | None = None) -> list[str]:
    """Of these batches, the references of those committed in `zone` (manifest present)."""
    fs = filesystem(settings)
    found = []
    for ref in refs:
        target = ref_in_zone(ref, zone, settings)
        fs.invalidate_cache(f"{target.removeprefix('s3://')}/{MANIFEST}")
        if fs.exists(f"{target.removeprefix('s3://')}/{MANIFEST}"):
            found.append(target)
    return found


def read_manifest(ref: str, settings: Settings | None = None) -> Manifest:
    """The manifest of a committed batch; `BatchNotFoundError` if it was never committed."""
    fs = filesystem(settings)
    path = f"{ref.removeprefix('s3://').rstrip('/')}/{MANIFEST}"
    fs.invalidate_cache(path)  # a listing cached earlier must not hide another process's commit
    try:
        return Manifest.from_json(fs.cat_file(path).decode())
    except FileNotFoundError:
        raise BatchNotFoundError(f"no committed batch at {ref} (missing {MANIFEST})") from None


def list_batches(
    zone: str,
    dataset: str,
    partition: Partitions = None,
    settings: Settings | None = None,
) -> list[Manifest]:
    """Committed batches of a dataset in a zone (of a partition, or some: a listing each), oldest
    first by data time (the raw batch's ingest time, inherited along its lineage), then commit."""
    s = settings or get_settings()
    fs = filesystem(s)
    base = f"{s.bucket(zone)}/{dataset}"
    commit.forget_listings(fs, base)
    names = ["*"] if partition is None else [partition] if isinstance(partition, str) else partition
    paths = [path for name in names for path in fs.glob(f"{base}/{name}/*/{MANIFEST}")]
    blobs = fs.cat(paths, on_error="raise") if paths else {}  # fetched concurrently
    manifests = [Manifest.from_json(blobs[p].decode()) for p in paths]
    return sorted(manifests, key=lambda m: (m.partition, *m.order))


def latest_batches(
    zone: str, dataset: str, settings: Settings | None = None, partitions: Partitions = None
) -> dict[str, Manifest]:
    """The newest committed batch of each partition (of `partitions` only, when given) by data
    time: the batch made from the newest raw batch, whenever the stage that made it ran."""
    latest: dict[str, Manifest] = {}
    for m in list_batches(zone, dataset, partitions, settings):
        latest[m.partition] = m  # sorted oldest first, so the last one wins
    return latest


def read_parts(manifest: Manifest, settings: Settings | None = None) -> Iterator[pd.DataFrame]:
    """The parts of a committed batch, one pandas frame at a time; a part whose rows or sha256
    differ from the manifest, or that is missing, is refused (`BatchIntegrityError`)."""
    import pandas as pd

    fs = filesystem(settings)
    for part, url in zip(manifest.parts, manifest.part_urls, strict=True):
        try:
            data = fs.cat_file(url.removeprefix("s3://"))
        except FileNotFoundError:
            raise BatchIntegrityError(
                f"{url}: listed in the manifest of {manifest.ref} but missing; refusing to read it"
            ) from None
        df = pd.read_parquet(io.BytesIO(data))
        commit.check_part(manifest, part, data, len(df))
        yield df


def read_batch(manifest: Manifest, settings: Settings | None = None) -> pd.DataFrame:
    """The rows of a committed batch as one pandas frame (small batches only)."""
    import pandas as pd

    frames = list(read_parts(manifest, settings))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class PartsWriter:
    """Writes frames one by one as the parts of a batch with `source`'s dataset and partition
    (its batch id unless `batch_id`) under a fresh attempt; `commit` writes the manifest. The
    content hash chains the parts' sha256. Nothing is visible before `commit`. Under the
    source's own batch id (raw -> validated/quarantine) the commit replaces what is there (a
    re-validation under a new contract); under a new batch id it commits a new batch only.
    The data time is the source's."""

    def __init__(
        self,
        zone: str,
        source: Manifest,
        *,
        batch_id: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.zone, self.source = zone, source
        self.batch_id = batch_id or source.batch_id
        self.prefix = (
            f"{self.settings.bucket(zone)}/{source.dataset}/{source.partition}/{self.batch_id}"
        )
        self.attempt = commit.new_attempt_id()
        self._fs = filesystem(self.settings)
        self._digest = hashlib.sha256()
        self._parts = 0

    def add(self, df: pd.DataFrame) -> None:
        data = _parquet_bytes(df)
        self._fs.pipe_file(f"{self.prefix}/{self.attempt}/part-{self._parts:05d}.parquet", data)
        self._digest.update(hashlib.sha256(data).digest())
        self._parts += 1

    def commit(
        self,
        *,
        extra: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
        upstream: list[str] | None = None,
    ) -> Manifest:
        for name, data in (files or {}).items():
            self._fs.pipe_file(f"{self.prefix}/{self.attempt}/{name}", data)
        source = self.source
        return commit_parts(
            self.zone,
            source.dataset,
            source.partition,
            self.batch_id,
            attempt=self.attempt,
            files=[f"{self.attempt}/{name}" for name in files or {}],
            data_time=source.data_time or source.created_at,
            replaces=True if self.batch_id == source.batch_id else None,
            settings=self.settings,
            source=source.source,
            content_hash=self._digest.hexdigest(),
            contract_hash=source.contract_hash,
            upstream=upstream if upstream is not None else [source.ref],
            extra={**source.extra, **(extra or {})},
        )


def write_parts(
    frames: Iterable[pd.DataFrame],
    zone: str,
    source: Manifest,
    *,
    batch_id: str | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
    upstream: list[str] | None = None,
    settings: Settings | None = None,
) -> Manifest:
    """Write frames as the parts of a batch (see `PartsWriter`), then commit it."""
    writer = PartsWriter(zone, source, batch_id=batch_id, settings=settings)
    for df in frames:
        writer.add(df)
    return writer.commit(extra=extra, files=files, upstream=upstream)


def read_dask(manifests: list[Manifest], settings: Settings | None = None):
    """The rows of committed batches as one Dask frame (lazy; one partition per part).

    Only the parts the manifests list are read, and key=value folders in the keys are not
    turned into columns: a batch's columns are the ones it was written with.
    """
    import dask.dataframe as dd

    urls = [url for m in manifests for url in m.part_urls]
    if not urls:
        raise BatchNotFoundError("no committed parts to read")
    return dd.read_parquet(
        urls,
        storage_options=(settings or get_settings()).s3_storage_options(dask=True),
        dataset={"partitioning": None},
    )


def copy_batch(
    manifest: Manifest,
    to_zone: str,
    *,
    extra: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
    settings: Settings | None = None,
) -> Manifest:
    """Copy a committed batch into another zone under the same batch id, as a new attempt
    there, then commit it (replacing what that zone held under the id, if anything).

    `files` are extra objects (e.g. a `_report.json`) written beside the parts before the commit.
    """
    s = settings or get_settings()
    fs = filesystem(s)
    attempt = commit.new_attempt_id()
    parts = [{**p, "name": f"{attempt}/{p['name'].rsplit('/', 1)[-1]}"} for p in manifest.parts]
    target = dataclasses.replace(
        manifest,
        zone=to_zone,
        bucket=s.bucket(to_zone),
        parts=parts,
        upstream=[manifest.ref],
        extra={**manifest.extra, **(extra or {})},
        created_at=datetime.now(UTC).isoformat(),
        version=MANIFEST_VERSION,
        attempt=attempt,
        data_time=manifest.data_time or manifest.created_at,
        files=[f"{attempt}/{name}" for name in files or {}],
    )
    for old, new in zip(manifest.parts, parts, strict=True):
        fs.copy(f"{manifest.prefix}/{old['name']}", f"{target.prefix}/{new['name']}")
    for name, data in (files or {}).items():
        fs.pipe_file(f"{target.prefix}/{attempt}/{name}", data)
    committed = commit.commit(fs, target, replaces=True)
    log.info("copied %s to %s", manifest.ref, committed.ref)
    return committed


def write_json(
    zone: str, key: str, obj: Any, settings: Settings | None = None, *, create_only: bool = False
) -> str:
    """Write a JSON document to `<zone bucket>/<key>`; return its s3:// URL. `create_only`:
    refused (`FileExistsError`) when the key exists (`If-None-Match: *`), for append-only logs."""
    s = settings or get_settings()
    path = f"{s.bucket(zone)}/{key}"
    data = json.dumps(obj, indent=2, default=str).encode()
    filesystem(s).pipe_file(path, data, mode="create" if create_only else "overwrite")
    return f"s3://{path}"


def read_json(url: str, settings: Settings | None = None) -> Any:
    return json.loads(filesystem(settings).cat_file(url.removeprefix("s3://")).decode())


def put_content_addressed(zone: str, data: bytes, settings: Settings | None = None) -> str:
    """`data` kept once, never overwritten, at `<zone bucket>/_sources/sha256/<hex>`: its URL."""
    s = settings or get_settings()
    path = f"{s.bucket(zone)}/_sources/sha256/{_sha256(data)}"
    fs = filesystem(s)
    fs.invalidate_cache(path.rsplit("/", 1)[0])
    if not fs.exists(path):
        commit.put_if_absent(fs, path, data)  # two writers of the same bytes: one object
    return f"s3://{path}"
