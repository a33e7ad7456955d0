"""A remote under an S3 prefix (AWS, or an S3-compatible store through --endpoint-url),
with boto3: `pip install 'datmo[s3]'`. Credentials come from boto3's usual places (the
AWS_* variables, ~/.aws/credentials and config, an instance role); none is stored.

An S3 PUT is whole or absent (a multipart upload appears only when completed), so no
temporary names are needed; boto3 sends a checksum the server checks, and objects are
hashed here before they go and after they come. The code history travels as git
bundles, stored among the objects and named by the snapshot records that need them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datmo.core.remote import gitcode
from datmo.core.remote.layout import (
    KINDS,
    META,
    DamagedRemote,
    Item,
    Progress,
    RemoteError,
    meta_bytes,
    object_key,
    parallel,
    parse_meta,
    parse_object_key,
    parse_record_key,
)
from datmo.core.storage.hashing import hash_file
from datmo.errors import CorruptStore, DatmoError, DiskFull

if TYPE_CHECKING:
    from datmo.core.remote.url import RemoteURL
    from datmo.core.shadowgit.repo import ShadowRepo
    from datmo.core.storage.objects import ObjectStore

WORKERS = 16
CHUNK = 1 << 20
HEAD_LIMIT = 256  # up to this many objects are looked up one by one; more, by listing
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def _client(endpoint_url: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise DatmoError("S3 remotes need boto3: pip install 'datmo[s3]'") from None
    session = boto3.session.Session()
    region = session.region_name or ("us-east-1" if endpoint_url else None)
    config = Config(max_pool_connections=WORKERS, retries={"max_attempts": 4, "mode": "standard"})
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Transport:
    def __init__(self, url: RemoteURL, endpoint_url: str | None = None) -> None:
        self.url = url
        self.label = url.text
        self.bucket = url.bucket or ""
        self.prefix = f"{url.path}/" if url.path else ""
        self.s3 = _client(endpoint_url)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _call(self, doing: str, fn: Callable[..., Any], **kw: Any) -> Any:
        """One S3 request; its failure as one line that says what to do."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(Bucket=self.bucket, **kw)
        except NoCredentialsError:
            raise RemoteError(
                f"no AWS credentials for {self.label}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or configure ~/.aws/credentials"
            ) from None
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise FileNotFoundError(kw.get("Key", "")) from None
            if code == "NoSuchBucket":
                raise RemoteError(
                    f"the bucket of {self.label} does not exist; create it first"
                ) from None
            if code in ("QuotaExceeded", "EntityTooLarge", "InsufficientStorage"):
                raise DiskFull(
                    f"the remote {self.label} refused more data ({code}); free space there"
                ) from None
            raise RemoteError(f"{doing} on {self.label} failed: {code or e}") from None
        except BotoCoreError as e:
            raise RemoteError(f"{doing} on {self.label} failed: {e}") from None

    def _get(self, key: str, doing: str) -> bytes | None:
        try:
            return bytes(self._call(doing, self.s3.get_object, Key=self._key(key))["Body"].read())
        except FileNotFoundError:
            return None

    def _put(self, key: str, data: bytes, doing: str) -> None:
        self._call(doing, self.s3.put_object, Key=self._key(key), Body=data)

    def _list(self, under: str) -> Iterator[str]:
        token: dict[str, str] = {}
        while True:
            page = self._call("listing", self.s3.list_objects_v2, Prefix=self._key(under), **token)
            for entry in page.get("Contents", []):
                yield entry["Key"][len(self.prefix) :]
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    # -- the remote itself ------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        raw = self._get(META, "reading the remote")
        if raw is None:
            return None
        return parse_meta(raw, self.label)

    def create(self, meta: dict[str, Any]) -> dict[str, Any]:
        found = self.read_meta()
        if found is not None:
            return found
        page = self._call("listing", self.s3.list_objects_v2, Prefix=self.prefix, MaxKeys=1)
        if page.get("KeyCount", 0):
            found = self.read_meta()
            if found is not None:
                return found
            raise RemoteError(
                f"{self.label} is not empty and holds no datmo remote; give an empty prefix"
            )
        self._put(META, meta_bytes(meta), "making it")
        made = self.read_meta()
        assert made is not None
        return made

    def record_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {k: set() for k in KINDS}
        for key in self._list("records/"):
            found = parse_record_key(key)
            if found:
                out[found[0]].add(found[1])
        return out

    def read_records(self, keys: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}

        def get(key: str) -> None:
            raw = self._get(key, "reading records")
            if raw is not None:
                out[key] = raw

        parallel(get, keys, WORKERS)
        return out

    def missing_objects(self, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if len(wanted) > HEAD_LIMIT:
            have = {parse_object_key(k) for k in self._list("objects/")}
            return wanted - have
        missing: set[str] = set()

        def head(digest: str) -> None:
            try:
                self._call(
                    "looking for objects", self.s3.head_object, Key=self._key(object_key(digest))
                )
            except FileNotFoundError:
                missing.add(digest)

        parallel(head, sorted(wanted), WORKERS)
        return missing

    # -- sending ----------------------------------------------------------------------
    def send(
        self, objects: list[Item], records: list[tuple[str, bytes]], progress: Progress
    ) -> None:
        def put(item: Item) -> None:
            if hash_file(item.path) != item.digest:  # only bytes that match their name go
                raise CorruptStore(
                    f"{item.path} does not match its hash {item.digest[:12]}; nothing of it "
                    "was sent; run 'datmo fsck'"
                )
            key = self._key(object_key(item.digest))
            if item.size < 64 << 20:
                with open(item.path, "rb") as f:
                    self._call("sending objects", self.s3.put_object, Key=key, Body=f.read())
            else:  # multipart, in parts, by boto3's transfer manager
                self._call("sending objects", self._upload, Key=key, path=str(item.path))

        parallel(put, objects, WORKERS)
        for kind in KINDS:  # a kind is complete before the next, which may name it
            mine = [(k, d) for k, d in records if k.startswith(f"records/{kind}/")]
            parallel(lambda kd: self._put(kd[0], kd[1], "writing records"), mine, WORKERS)

    def _upload(self, Bucket: str, Key: str, path: str) -> None:
        self.s3.upload_file(path, Bucket, Key)

    # -- fetching ---------------------------------------------------------------------
    def fetch_objects(self, digests: list[str], into: ObjectStore, progress: Progress) -> None:
        def get(digest: str) -> None:
            try:
                got = self._call(
                    "fetching objects", self.s3.get_object, Key=self._key(object_key(digest))
                )
            except FileNotFoundError:
                raise DamagedRemote(
                    f"object {digest[:12]} is missing from {self.label}; run 'datmo fsck --remote'"
                ) from None
            into.receive(got["Body"].iter_chunks(CHUNK), digest, self.label)

        parallel(get, digests, WORKERS)

    def _download(self, digest: str, dest: Path) -> None:
        raw = self._get(object_key(digest), "fetching code")
        if raw is None:
            raise DamagedRemote(f"git bundle {digest[:12]} is missing from {self.label}")
        from datmo.core.storage.hashing import hash_bytes

        if hash_bytes(raw) != digest:
            raise DamagedRemote(f"git bundle {digest[:12]} on {self.label} is damaged")
        dest.write_bytes(raw)

    # -- code -------------------------------------------------------------------------
    def push_code(
        self, git: ShadowRepo, refs: dict[str, str], scratch: Path
    ) -> tuple[list[Item], str | None]:
        if not refs:
            return [], None
        path = scratch / f"code-{os.getpid()}.bundle"
        gitcode.make_bundle(git, refs, path)
        digest = hash_file(path)
        return [Item(digest, path, path.stat().st_size)], digest

    def fetch_code(
        self, git: ShadowRepo, wants: dict[str, tuple[str, str | None]], scratch: Path
    ) -> None:
        by_bundle: dict[str, list[str]] = {}
        for sid, (_, bundle) in wants.items():
            if bundle is None:
                raise DamagedRemote(f"snapshot {sid[:8]} on {self.label} names no code bundle")
            by_bundle.setdefault(bundle, []).append(sid)
        for bundle, sids in sorted(by_bundle.items()):
            path = scratch / f"fetch-{bundle[:16]}.bundle"
            try:
                self._download(bundle, path)
                gitcode.fetch(git, str(path), sids, self.label)
            finally:
                path.unlink(missing_ok=True)

    # -- checking ---------------------------------------------------------------------
    def object_hashes(self) -> Iterator[tuple[str, str | None]]:
        from blake3 import blake3

        for key in self._list("objects/"):
            digest = parse_object_key(key)
            if digest is None:
                continue
            try:
                body = self._call("reading objects", self.s3.get_object, Key=self._key(key))["Body"]
                h = blake3(max_threads=1)
                for chunk in body.iter_chunks(CHUNK):
                    h.update(chunk)
                yield digest, h.hexdigest()
            except FileNotFoundError:
                yield digest, None

    def code_problems(self, wants: dict[str, tuple[str, str | None]]) -> list[str]:
        import tempfile

        out: list[str] = []
        heads: dict[str, dict[str, str]] = {}
        with tempfile.TemporaryDirectory() as scratch:
            for sid, (commit, bundle) in sorted(wants.items()):
                if bundle is None:
                    out.append(f"snapshot {sid[:8]} names no code bundle")
                    continue
                if bundle not in heads:
                    path = Path(scratch) / "check.bundle"
                    try:
                        self._download(bundle, path)
                        heads[bundle] = gitcode.bundle_heads(path)
                    except DatmoError as e:
                        out.append(f"code bundle {bundle[:12]}: {e}")
                        heads[bundle] = {}
                if heads[bundle].get(f"refs/datmo/snapshots/{sid}") != commit:
                    out.append(f"snapshot {sid[:8]}: its code ({commit[:12]}) is not in its bundle")
        return out

    def close(self) -> None:
        pass
