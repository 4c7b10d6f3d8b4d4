"""The commit protocol of every zone: an attempt writes under its own prefix, its manifest makes it
visible, and only one manifest per batch is ever committed.

Key layout of a batch (`<bucket>/<dataset>/<partition>/<batch_id>/`):

    <batch_id>/a-<UTC time>-<hex8>/part-00000.parquet   the parts one attempt wrote
    <batch_id>/a-<UTC time>-<hex8>/_report.json         side files of that attempt
    <batch_id>/_manifest.json                           the commit: names the attempt
                                                        (`attempt`) and lists its parts
                                                        relative to the batch prefix

- A **new** batch is committed with a conditional PUT (`If-None-Match: *`): of two attempts of
  one task, one manifest wins; the loser removes its own attempt and returns the winner's
  manifest. The batch id of a task that must not commit twice is derived from its inputs
  (`idempotency_key`), so both attempts meet at the same manifest key.
- A **replacement** (the same day re-scored by the same model version, a raw batch validated
  under a new contract) overwrites the manifest (one PUT: a reader sees the old one or the new
  one), then removes the superseded attempt's objects. A failed replacement leaves the old
  batch committed and readable.
- An attempt that died before its commit is garbage that no reader sees: readers go through
  manifests only, never listings. Nobody deletes another attempt that is not superseded.

Readers check what a manifest says (`check_part`): a part whose row count or sha256 differs
is refused (`BatchIntegrityError`), never read as data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ml.errors import RefusedError

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 2  # 2: parts under the attempt's own prefix (`attempt`), `data_time`


class BatchIntegrityError(RefusedError):
    """A committed batch whose parts do not match its manifest (rows, checksum, missing part)."""


def new_attempt_id(now: datetime | None = None) -> str:
    """A fresh attempt folder name: every attempt of every writer gets its own."""
    now = now or datetime.now(UTC)
    return f"a-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def idempotency_key(*inputs: Any) -> str:
    """A batch id derived from a task's inputs: the same inputs give the same batch id, so two
    attempts of one task commit at most one batch."""
    payload = json.dumps([str(i) for i in inputs]).encode()
    return "i-" + hashlib.sha256(payload).hexdigest()[:24]


@dataclass
class Manifest:
    """The commit record of one batch: what it holds and where it came from.

    `parts[].name` is relative to the batch prefix (`<attempt>/part-00000.parquet`; batches
    committed before attempts existed name `part-00000.parquet`). `data_time` orders batches of
    one partition by their raw lineage (the raw batch's ingest time, inherited by every batch
    made from it), never by the time a later stage ran.
    """

    zone: str
    bucket: str
    dataset: str
    partition: str
    batch_id: str
    parts: list[dict[str, Any]]
    rows: int
    schema: dict[str, str]
    source: str = ""
    content_hash: str = ""
    contract_hash: str = ""
    upstream: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    version: int = MANIFEST_VERSION
    attempt: str = ""
    data_time: str = ""
    files: list[str] = field(default_factory=list)  # side files, relative to the batch prefix

    @property
    def prefix(self) -> str:
        return f"{self.bucket}/{self.dataset}/{self.partition}/{self.batch_id}"

    @property
    def ref(self) -> str:
        """The batch's address, the thing XCom and asset events carry."""
        return f"s3://{self.prefix}"

    @property
    def part_urls(self) -> list[str]:
        return [f"s3://{self.prefix}/{p['name']}" for p in self.parts]

    @property
    def order(self) -> tuple[str, str]:
        """Sort key inside a partition: data time first, then commit time."""
        return (self.data_time or self.created_at, self.created_at)

    def file_url(self, name: str) -> str:
        """A side file of the committed attempt (e.g. `_report.json`)."""
        for rel in self.files:
            if rel.rsplit("/", 1)[-1] == name:
                return f"s3://{self.prefix}/{rel}"
        return f"s3://{self.prefix}/{name}"  # written before attempts existed

    def objects(self) -> list[str]:
        """Every object the manifest names, relative to the batch prefix."""
        return [p["name"] for p in self.parts] + list(self.files)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def read_committed(fs, prefix: str) -> Manifest | None:
    """The manifest committed at a batch prefix (no scheme), or None."""
    fs.invalidate_cache(f"{prefix}/{MANIFEST}")  # never a stale listing's answer
    try:
        return Manifest.from_json(fs.cat_file(f"{prefix}/{MANIFEST}").decode())
    except FileNotFoundError:
        return None


def forget_listings(fs, prefix: str) -> None:
    """Forget what `fs` listed at `prefix` and under it: other processes commit while this one
    runs (s3fs's `invalidate_cache(path)` forgets a folder and its parents, not its subfolders,
    so a glob would walk an old listing of a batch folder and miss a new manifest)."""
    prefix = prefix.rstrip("/")
    for key in [k for k in list(fs.dircache) if k == prefix or k.startswith(f"{prefix}/")]:
        fs.dircache.pop(key, None)
    fs.invalidate_cache(prefix)


def put_if_absent(fs, path: str, data: bytes) -> bool:
    """Write `path` only if no object is there (S3 `If-None-Match: *`); False when one was."""
    try:
        if "file" in fs.protocol:  # a local folder (tests)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with open(path, "xb") as fh:
                fh.write(data)
        else:
            fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    fs.invalidate_cache(path)
    return True


def remove(fs, prefix: str, names: list[str]) -> None:
    """Remove objects under a batch prefix (a superseded or losing attempt); missing is fine.

    Where the identity may not delete (`raw` is append-only: no stage holds a delete there), the
    objects stay as garbage that no manifest names, which readers never see; logged.
    """
    fs.invalidate_cache()  # a listing cached earlier would hide what another writer added
    for name in names:
        try:
            fs.rm(f"{prefix}/{name}", recursive=True)
        except FileNotFoundError:
            pass
        except PermissionError:
            log.warning("%s/%s: no delete right here; left unreferenced (not data)", prefix, name)
    fs.invalidate_cache()


def commit(fs, manifest: Manifest, *, replaces: Manifest | bool | None = None) -> Manifest:
    """Commit `manifest` (its attempt's objects are written); return the committed manifest.

    `replaces=None`: a new batch, committed only if no manifest exists (else the attempt is
    removed and the existing manifest returned). A `Manifest`: the batch it replaces, whose
    objects not named by the new one are removed after the switch. `True`: replace whatever is
    committed at that moment (read just before the switch).
    """
    prefix = manifest.prefix
    data = manifest.to_json().encode()
    if replaces is None:
        if put_if_absent(fs, f"{prefix}/{MANIFEST}", data):
            return manifest
        winner = read_committed(fs, prefix)
        log.info(
            "%s: another attempt committed first (%s); attempt %s removed",
            manifest.ref,
            winner.attempt if winner else "?",
            manifest.attempt,
        )
        remove(
            fs,
            prefix,
            [n for n in manifest.objects() if winner is None or n not in winner.objects()],
        )
        if winner is None:  # committed, then removed in between: never seen in practice
            raise BatchIntegrityError(f"{manifest.ref}: commit lost to a manifest that vanished")
        return winner
    previous = read_committed(fs, prefix) if replaces is True else replaces
    fs.pipe_file(f"{prefix}/{MANIFEST}", data)  # one PUT: the switch
    fs.invalidate_cache(prefix)
    if isinstance(previous, Manifest):
        keep = set(manifest.objects())
        stale = [n for n in previous.objects() if n not in keep]
        if previous.attempt and previous.attempt != manifest.attempt:
            # The whole superseded attempt, including what its writer put there unlisted
            # (e.g. Dask's `_metadata`).
            stale = [previous.attempt, *(n for n in stale if not n.startswith(previous.attempt))]
        remove(fs, prefix, stale)
        if stale:
            log.info(
                "%s: replaced attempt %s by %s", manifest.ref, previous.attempt, manifest.attempt
            )
    return manifest


def check_part(manifest: Manifest, part: dict[str, Any], data: bytes, rows: int) -> None:
    """Refuse a part whose bytes or rows differ from what the manifest says."""
    url = f"s3://{manifest.prefix}/{part['name']}"
    if "sha256" in part and hashlib.sha256(data).hexdigest() != part["sha256"]:
        raise BatchIntegrityError(
            f"{url}: sha256 differs from the manifest of {manifest.ref}; refusing to read it"
        )
    if "rows" in part and rows != part["rows"]:
        raise BatchIntegrityError(
            f"{url}: {rows} rows, the manifest of {manifest.ref} says {part['rows']}; "
            "refusing to read it"
        )
