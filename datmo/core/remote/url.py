"""What a remote's URL may be: a folder, `ssh://[user@]host[:port]/path`, `s3://bucket/prefix`.

Checked once, when the remote is added, and again whenever it is opened (project.json can
be edited by hand). Credentials never belong in a URL: they come from the ssh agent and
config, or the standard AWS variables and files. A host or user that begins with `-`
would be read by ssh as an option (git's CVE-2017-1000117), so it is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from datmo.errors import UsageError

FOLDER, SSH, S3 = "folder", "ssh", "s3"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z")
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]%\-]+\Z")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-]*\Z")


@dataclass(frozen=True)
class RemoteURL:
    kind: str
    text: str  # as stored: a folder made absolute, the rest as given
    path: str  # the folder; the path on the ssh host; the prefix in the bucket ("" for none)
    host: str | None = None
    user: str | None = None
    port: int | None = None
    bucket: str | None = None


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"remote URL '{text}' {why}")


def parse(text: str, cwd: str | None = None) -> RemoteURL:
    """A checked URL; a relative folder is taken from cwd (default: the current folder)."""
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _bad(text, "is empty or has control characters")
    if text.startswith("ssh://"):
        return _ssh(text)
    if text.startswith("s3://"):
        return _s3(text)
    if text.startswith("file://"):
        text = unquote(text[len("file://") :])
        if not text.startswith("/"):
            raise _bad(text, "must be file:///absolute/path")
    elif re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", text):
        scheme = text.split("://", 1)[0]
        raise _bad(
            text, f"has a scheme datmo does not know ({scheme}); use a folder, ssh:// or s3://"
        )
    elif re.match(r"[^/]+@[^/]+:", text) or re.match(r"[A-Za-z0-9.\-]+:[^/\\]", text):
        raise _bad(text, "looks like scp syntax; write ssh://[user@]host[:port]/path")
    folder = os.path.normpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(text)))
    return RemoteURL(FOLDER, folder, folder)


def _ssh(text: str) -> RemoteURL:
    parts = urlsplit(text)
    if parts.password is not None or ":" in (parts.netloc.rpartition("@")[0]):
        raise _bad(
            "ssh://...", "has a password in it; datmo never stores one: use an ssh key or agent"
        )
    host, user = parts.hostname or "", parts.username
    if not host:
        raise _bad(text, "names no host; write ssh://[user@]host[:port]/path")
    if host.startswith("-") or (user or "").startswith("-"):
        raise _bad(text, "has a host or user that begins with '-'; ssh would take it as an option")
    if not _HOST.match(host) or (user is not None and not _USER.match(user)):
        raise _bad(text, "has a host or user name with characters ssh does not take")
    try:
        port = parts.port
    except ValueError:
        raise _bad(text, "has a bad port number") from None
    path = unquote(parts.path)
    if not path.startswith("/") or path.rstrip("/") == "" or parts.query or parts.fragment:
        raise _bad(text, "needs an absolute path on the host, such as ssh://host/srv/datmo/proj")
    if "\n" in path or "\0" in path:
        raise _bad(text, "has a path datmo cannot use")
    return RemoteURL(SSH, text, os.path.normpath(path), host=host, user=user, port=port)


def _s3(text: str) -> RemoteURL:
    parts = urlsplit(text)
    if "@" in parts.netloc:
        raise _bad(
            "s3://...",
            "has credentials in it; datmo never stores them: use the AWS variables or files",
        )
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise _bad(text, "needs a bucket name of 3-63 lower-case letters, digits, '.' or '-'")
    prefix = unquote(parts.path).strip("/")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise _bad(text, "has an empty, '.' or '..' part in its prefix")
    if parts.query or parts.fragment:
        raise _bad(text, "must not have a query or fragment")
    return RemoteURL(S3, text, prefix, bucket=bucket)


def check_endpoint(url: str) -> str:
    """--endpoint-url for S3-compatible stores: http(s)://host[:port][/path], no credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint-url '{url}' must be http(s)://host[:port]")
    if parts.username or parts.password:
        raise UsageError(
            "--endpoint-url has credentials in it; datmo never stores them: use the AWS "
            "variables or files"
        )
    return url
