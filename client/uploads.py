"""Writing one object in pieces, as buffered files do: one PUT if it fits, else multipart.

A writer hands over its buffer whenever it fills (``final=False``) and once
more when it closes (``final=True``). An object that never filled the buffer
is one PUT; a bigger one becomes a multipart upload, one part per buffer, so
parts are at least ``MIN_PART`` bytes except the last (as S3 requires). On
any failure, or on ``abort``, the upload is dropped: nothing partial is ever
visible under the key.
"""

from __future__ import annotations

from contextlib import suppress

from ..tiering.errors import CacheError, InterfaceError
from .client import Client
from .protocol import ObjectInfo

MIN_PART = 5 * 1024 * 1024
"""S3's smallest part (all but the last)."""


class Upload:
    """One object being written; ``info`` is set once it is stored."""

    def __init__(self, client: Client, bucket: str, key: str, *, content_type: str | None = None) -> None:
        if not bucket or not key:
            raise InterfaceError(f"cannot write {bucket}/{key}: give a bucket and a key")
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type = content_type
        self.upload_id: str | None = None
        self.parts: list[tuple[int, str]] = []
        self.info: ObjectInfo | None = None
        self._failed = False

    async def send(self, data: bytes, *, final: bool) -> None:
        """Write the next piece; ``final`` stores the object."""
        if self._failed or self.info is not None:
            raise InterfaceError(f"the upload of {self.bucket}/{self.key} is over (failed or stored)")
        pc = self.client
        try:
            if final and self.upload_id is None:
                self.info = await pc.put(
                    self.bucket, self.key, data, size=len(data), content_type=self.content_type
                )
                return
            if self.upload_id is None:
                self.upload_id = await pc.create_upload(self.bucket, self.key, content_type=self.content_type)
            if data or not self.parts:
                n = len(self.parts) + 1
                etag = await pc.put_part(self.bucket, self.key, self.upload_id, n, data, size=len(data))
                self.parts.append((n, etag))
            if final:
                self.info = await pc.complete_upload(self.bucket, self.key, self.upload_id, self.parts)
        except BaseException:
            await self.abort()
            raise

    async def abort(self) -> None:
        """Drop whatever was uploaded (a stored object stays)."""
        if self.info is not None:
            return
        self._failed = True
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is not None:
            with suppress(CacheError):  # the parts expire with the upload anyway
                await self.client.abort_upload(self.bucket, self.key, upload_id)
