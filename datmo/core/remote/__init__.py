"""Transports for push and pull, one module per kind of remote behind one Protocol
(layout.Transport): a folder, an ssh host, an S3 bucket. A bundle file has the same
layout in a tar (bundlefile)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datmo.core.remote.layout import Transport
    from datmo.core.remote.url import RemoteURL


def open_transport(url: RemoteURL, endpoint_url: str | None = None) -> Transport:
    """The transport for a checked URL; boto3 and ssh load only for their kind."""
    from datmo.core.remote.url import FOLDER, SSH

    if url.kind == FOLDER:
        from datmo.core.remote.folder import FolderTransport

        return FolderTransport(url)
    if url.kind == SSH:
        from datmo.core.remote.ssh import SshTransport

        return SshTransport(url)
    from datmo.core.remote.s3 import S3Transport

    return S3Transport(url, endpoint_url)
