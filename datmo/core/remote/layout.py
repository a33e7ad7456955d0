"""A remote's layout, the same in a folder, on an ssh host, under an S3 prefix and in a
bundle file, and the Protocol every transport keeps.

    datmo-remote.json             which project the remote holds (one project per remote)
    objects/ab/cdef...            file contents and run data, named by their BLAKE3 hash
    git/                          a bare git repository with refs/datmo/snapshots/<id>
                                  (folder, ssh); S3 and bundles keep git bundles as objects
    records/<kind>/<id>.json      one envelope per record: the record, and for a run the
                                  objects holding its data
    tmp/                          uploads in progress (folder, ssh)

The rule that keeps a remote consistent, even after a push killed half way: objects and
code first, then records; environments, snapshots and sweeps before the runs that name
them. A record on a remote therefore vouches for everything it needs, so a later push
sends only the records the remote lacks and whatever they need.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from datmo.core.storage.runs import SHARED
from datmo.errors import DatmoError

if TYPE_CHECKING:
    from datmo.core.shadowgit.repo import ShadowRepo
    from datmo.core.storage.objects import ObjectStore

FORMAT = 1
META = "datmo-remote.json"
KINDS = ("environments", "snapshots", "sweeps", "runs")  # the order records are written in
INCOMING = "refs/datmo/incoming/"  # fetched code, until its snapshot's record is written
SNAPSHOT_REFS = "refs/datmo/snapshots/"
RUN_DATA = SHARED  # a run's data files that travel with it
DIGEST = re.compile(r"[0-9a-f]{64}\Z")
RECORD_ID = re.compile(r"[0-9a-f]{8,64}\Z")
SHA1 = re.compile(r"[0-9a-f]{40}\Z")
RECORD_KEY = re.compile(r"records/(environments|snapshots|sweeps|runs)/([0-9a-f]{8,64})\.json\Z")
OBJECT_KEY = re.compile(r"objects/([0-9a-f]{2})/([0-9a-f]{62})\Z")
MAX_RECORD = 64 << 20  # a record larger than this is not one of ours

Progress = Callable[[str], None] | None


class RemoteError(DatmoError):
    """A remote cannot be reached, read or written; the message says which and why."""


class DamagedRemote(DatmoError):
    """Something on a remote (or in a bundle) fails its check."""

    exit_code = 3


@dataclass(frozen=True)
class Item:
    """An object to send: its digest and the local file that holds its bytes."""

    digest: str
    path: Path
    size: int


@dataclass
class Envelope:
    kind: str
    id: str
    record: dict[str, Any]
    data: dict[str, str] = field(default_factory=dict)  # a run's data files: name -> digest
    bundle: str | None = None  # S3 and bundle files: the git bundle holding its code

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "kind": self.kind, "record": self.record}
        if self.data:
            doc["data"] = self.data
        if self.bundle:
            doc["bundle"] = self.bundle
        return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"


def object_key(digest: str) -> str:
    return f"objects/{digest[:2]}/{digest[2:]}"


def record_key(kind: str, record_id: str) -> str:
    return f"records/{kind}/{record_id}.json"


def parse_record_key(key: str) -> tuple[str, str] | None:
    m = RECORD_KEY.match(key)
    return (m[1], m[2]) if m else None


def parse_object_key(key: str) -> str | None:
    m = OBJECT_KEY.match(key)
    return m[1] + m[2] if m else None


def parse_envelope(key: str, raw: bytes, where: str) -> Envelope:
    """An envelope read from a remote or bundle, its shape checked (the record itself is
    checked by its entity class when it is installed)."""
    found = parse_record_key(key)
    bad = DamagedRemote(f"{key} on {where} is damaged; run 'datmo fsck --remote'")
    if found is None:
        raise bad
    kind, record_id = found
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != kind
        or not isinstance(doc.get("record"), dict)
    ):
        raise bad
    if doc.get("format") != FORMAT:
        raise DatmoError(f"{key} on {where} is of a newer format than this datmo; upgrade datmo")
    data, bundle = doc.get("data") or {}, doc.get("bundle")
    if doc["record"].get("id") != record_id or not isinstance(data, dict):
        raise bad
    if any(
        n not in RUN_DATA or not isinstance(d, str) or not DIGEST.match(d) for n, d in data.items()
    ):
        raise bad
    if bundle is not None and not (isinstance(bundle, str) and DIGEST.match(bundle)):
        raise bad
    return Envelope(kind, record_id, doc["record"], dict(data), bundle)


def meta_doc(project_id: str, name: str) -> dict[str, Any]:
    return {"format": FORMAT, "project_id": project_id, "project_name": name}


def meta_bytes(meta: dict[str, Any]) -> bytes:
    """A remote's META file as every transport writes it."""
    return json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"


def parse_meta(raw: bytes, where: str) -> dict[str, Any]:
    """A remote's META file, checked: DamagedRemote or a newer format is one error."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise DamagedRemote(f"{META} on {where} is damaged") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("project_id"), str):
        raise DamagedRemote(f"{META} on {where} is damaged; it should name the project it holds")
    if doc.get("format") != FORMAT:
        raise DatmoError(f"{where} is a datmo remote of a newer format; upgrade datmo")
    return doc


class Transport(Protocol):
    """One kind of remote. Every write is whole or absent: a temporary name then a rename
    (an S3 PUT is atomic by itself); objects are checked against their hash."""

    label: str  # the URL, for messages

    def read_meta(self) -> dict[str, Any] | None:
        """The remote's datmo-remote.json; None when there is no remote there yet."""

    def create(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Make the remote (refusing a place that holds something else); the meta it has."""

    def record_ids(self) -> dict[str, set[str]]:
        """kind -> the ids of the records the remote holds."""

    def read_records(self, keys: list[str]) -> dict[str, bytes]:
        """The raw envelopes at keys (missing ones left out)."""

    def missing_objects(self, digests: Iterable[str]) -> set[str]:
        """Which of digests the remote lacks."""

    def send(
        self, objects: list[Item], records: list[tuple[str, bytes]], progress: Progress
    ) -> None:
        """Objects (hash-checked as read), then the records, in the order given."""

    def fetch_objects(self, digests: list[str], into: ObjectStore, progress: Progress) -> None:
        """Copy objects into a local store, each checked against its hash before it lands."""

    def push_code(
        self, git: ShadowRepo, refs: dict[str, str], scratch: Path
    ) -> tuple[list[Item], str | None]:
        """Send the snapshots' commits (snapshot id -> commit): (objects to send with the
        records, and the git bundle among them that holds the code, when there is one).
        scratch: a local folder for temporary files."""

    def fetch_code(
        self, git: ShadowRepo, wants: dict[str, tuple[str, str | None]], scratch: Path
    ) -> None:
        """Bring snapshot id -> (commit, its bundle) into INCOMING refs of the shadow repo."""

    def object_hashes(self) -> Iterator[tuple[str, str | None]]:
        """(digest, the BLAKE3 of its bytes, or None when unreadable) for every object."""

    def code_problems(self, wants: dict[str, tuple[str, str | None]]) -> list[str]:
        """What is wrong with the remote's code history for these snapshots."""

    def close(self) -> None: ...


def parallel(fn: Callable[[Any], None], items: list[Any], workers: int) -> None:
    """fn over items in threads; the first failure stops what has not started and is raised."""
    if len(items) <= 1 or workers <= 1:
        for item in items:
            fn(item)
        return
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(min(workers, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
