"""Under-stores: where cached data really lives, behind one ``UnderStore`` protocol."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from ...tiering.errors import InterfaceError
from .base import UnderStore, UnderStoreTimeouts
from .local import LocalUnderStore
from .s3 import S3UnderStore

__all__ = ["LocalUnderStore", "S3UnderStore", "UnderStore", "UnderStoreTimeouts", "open_understore"]

_FORMS = (
    "file:///absolute/path (a local folder), http(s)://host[:port] (an S3-compatible "
    "endpoint) or s3:// (AWS S3, default endpoint)"
)


def open_understore(uri: str, timeouts: UnderStoreTimeouts | None = None) -> UnderStore:
    """The under-store named by ``uri``; InterfaceError for any other form.

    ``file:///abs/path`` creates the folder if it is missing. Credentials for
    S3 come from the standard AWS environment and files, never from the URI.
    ``timeouts`` tune an S3 under-store (default: ``UnderStoreTimeouts()``).
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file" and parts.netloc in ("", "localhost") and not parts.query:
        path = unquote(parts.path)
        if os.path.isabs(path):
            os.makedirs(path, exist_ok=True)
            return LocalUnderStore(path)
    elif scheme in ("http", "https") and parts.hostname and parts.path in ("", "/"):
        if not parts.query and not parts.fragment and not parts.username:
            return S3UnderStore(f"{scheme}://{parts.netloc}", timeouts=timeouts)
    elif scheme == "s3" and not parts.netloc and parts.path in ("", "/") and not parts.query:
        return S3UnderStore(None, timeouts=timeouts)
    raise InterfaceError(f"unsupported under-store URI {uri!r}: use {_FORMS}")
