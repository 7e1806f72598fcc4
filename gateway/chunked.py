"""Upload bodies, sans-I/O: an incremental aws-chunked decoder and payload checks.

Theory of operation. The gateway streams an upload into the under-store and
must never commit bytes it has not verified, yet must not hold the body in
memory. So verification happens *as the bytes pass*: the handler feeds each
network read to :class:`AwsChunkedDecoder` (when the body is aws-chunked),
which returns the payload pieces at once and checks each chunk's signature as
the chunk ends; every payload piece also goes through :class:`PayloadChecks`
(length, ``x-amz-content-sha256``, ``Content-MD5``, ``x-amz-checksum-*``).
The final checks run when the body ends, still inside the iterator the
under-store consumes, so a bad body raises before the under-store commits
(a local rename, a PutObject, or a multipart completion) and nothing is stored.

aws-chunked framing (all three streaming modes)::

    hex-size[;chunk-signature=<64 hex>]\\r\\n <size bytes> \\r\\n   ... repeated
    0[;chunk-signature=<64 hex>]\\r\\n                              the final chunk
    name:value\\r\\n ...                                             trailers, if announced
    \\r\\n

Signed chunks chain: each signature covers the previous one (the seed is the
request's own signature), so chunks cannot be dropped, reordered or spliced.
With ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` the trailer lines are signed
too (``x-amz-trailer-signature``).

Checksums: CRC32 (zlib), SHA1 and SHA256 (hashlib), CRC32C and CRC64NVME (the
AWS Common Runtime's implementations, ``awscrt``) are all verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from awscrt import checksums

from .s3 import sigv4
from .s3.errors import (
    BadDigest,
    IncompleteBody,
    InvalidRequest,
    S3Error,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)

MAX_CHUNK = 16 * 1024 * 1024
"""Largest aws-chunked chunk accepted (SDKs send 64 KiB to 8 MiB)."""
MAX_LINE = 4096
"""Longest chunk header or trailer line accepted."""
CHECKSUM_PREFIX = "x-amz-checksum-"


class InvalidDigest(S3Error):
    code = "InvalidDigest"
    status = 400
    default_message = "The Content-MD5 or checksum value you specified is not valid."


class _Hash(Protocol):
    def update(self, data: bytes, /) -> object: ...

    def digest(self) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _CrtCrc:
    """CRC32C or CRC64NVME, as S3 computes them (awscrt's implementations)."""

    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn, self._width, self.value = fn, width, 0

    def update(self, data: bytes, /) -> None:
        self.value = self._fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self._width, "big")


def _hasher(algorithm: str) -> _Hash | None:
    """A running hash for a checksum algorithm."""
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "crc32c":
        return _CrtCrc(checksums.crc32c, 4)
    if algorithm == "crc64nvme":
        return _CrtCrc(checksums.crc64nvme, 8)
    if algorithm in ("sha1", "sha256", "md5"):
        return hashlib.new(algorithm)
    raise InvalidRequest(f"Unsupported checksum algorithm {algorithm[:32]!r}")


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDigest(f"The {what} you specified is not valid base64.") from None


class PayloadChecks:
    """Verifies a (decoded) payload as it streams: length, sha256 claim, Content-MD5, checksums.

    ``checksums`` maps algorithm names (``crc32``, ``sha256``...) to the
    expected base64 value, or to None when the value only arrives later in a
    trailer (pass it to :meth:`finish`).
    """

    def __init__(
        self,
        *,
        length: int | None = None,
        sha256_hex: str | None = None,
        content_md5: str | None = None,
        checksums: Mapping[str, str | None] | None = None,
    ) -> None:
        self.length = length
        self.received = 0
        self._sha256_claim = sha256_hex.lower() if sha256_hex else None
        self._md5_claim = _b64(content_md5, "Content-MD5") if content_md5 is not None else None
        if self._md5_claim is not None and len(self._md5_claim) != 16:
            raise InvalidDigest("The Content-MD5 you specified is not valid.")
        self._expected = dict(checksums or {})
        self._hashes: dict[str, _Hash] = {}
        wanted = {*self._expected}
        if self._sha256_claim:
            wanted.add("sha256")
        if self._md5_claim:
            wanted.add("md5")
        for alg in wanted:
            if (h := _hasher(alg)) is not None:
                self._hashes[alg] = h

    def update(self, data: bytes) -> None:
        """Account for the next payload bytes; IncompleteBody past the announced length."""
        self.received += len(data)
        if self.length is not None and self.received > self.length:
            raise IncompleteBody("The request body is longer than its announced length.")
        for h in self._hashes.values():
            h.update(data)

    def finish(self, trailer_checksums: Mapping[str, str] | None = None) -> dict[str, str]:
        """Final checks; the verified checksums as base64 by algorithm (to echo in the answer)."""
        if self.length is not None and self.received != self.length:
            raise IncompleteBody()
        if self._sha256_claim is not None:
            if self._hashes["sha256"].digest().hex() != self._sha256_claim:
                raise XAmzContentSHA256Mismatch()
        if self._md5_claim is not None and self._hashes["md5"].digest() != self._md5_claim:
            raise BadDigest()
        expected = {**self._expected, **(trailer_checksums or {})}
        out: dict[str, str] = {}
        for alg, value in expected.items():
            if value is None:
                raise IncompleteBody(f"The trailing checksum {CHECKSUM_PREFIX}{alg} is missing.")
            claim = _b64(value, f"{CHECKSUM_PREFIX}{alg}")
            h = self._hashes.get(alg)
            if h is not None and h.digest() != claim:
                raise BadDigest(f"The {alg.upper()} you specified did not match the calculated checksum.")
            out[alg] = value.strip()
        return out


def checksum_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-checksum-<alg>`` request headers as {alg: base64 value}."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith(CHECKSUM_PREFIX) and low not in (
            "x-amz-checksum-algorithm",
            "x-amz-checksum-type",
            "x-amz-checksum-mode",
        ):
            out[low.removeprefix(CHECKSUM_PREFIX)] = value
    return out


def trailer_algorithms(x_amz_trailer: str | None) -> list[str]:
    """Algorithms announced by ``x-amz-trailer`` (only checksum trailers are supported)."""
    out = []
    for name in (x_amz_trailer or "").split(","):
        name = name.strip().lower()
        if not name:
            continue
        if not name.startswith(CHECKSUM_PREFIX):
            raise InvalidRequest(f"Unsupported trailer {name[:64]!r}")
        out.append(name.removeprefix(CHECKSUM_PREFIX))
    return out


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class AwsChunkedDecoder:
    """Incremental decoder of one aws-chunked body (see the module docstring).

    ``auth`` is the verified request when chunks are signed (its
    ``chunk_signed`` is True), else None. ``trailers`` lists the announced
    checksum algorithms (``x-amz-trailer``); their values are checked against
    the payload at the end. ``decoded_length`` (``x-amz-decoded-content-length``)
    is enforced when given. Feed bytes with :meth:`feed`, which returns payload
    pieces; call :meth:`finish` at the end of the body.
    """

    def __init__(
        self,
        *,
        auth: sigv4.AuthResult | None = None,
        decoded_length: int | None = None,
        trailers: Sequence[str] = (),
        max_chunk: int = MAX_CHUNK,
    ) -> None:
        self._auth = auth
        self._signed = auth is not None and auth.chunk_signed
        self._signed_trailer = self._signed and auth is not None and auth.has_trailer
        self._prev = auth.signature if auth is not None else ""
        self._max_chunk = max_chunk
        self._buf = bytearray()
        self._state = _SIZE
        self._remaining = 0
        self._chunk_sig: str | None = None
        self._chunk_hash = hashlib.sha256()
        self._trailer_names = list(trailers)
        self._trailers: dict[str, str] = {}
        self._trailer_lines = hashlib.sha256()
        self._trailer_sig: str | None = None
        self.checks = PayloadChecks(length=decoded_length, checksums={a: None for a in trailers})
        self.verified: dict[str, str] = {}

    @property
    def done(self) -> bool:
        """True once the final chunk (and trailers) have been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        """Consume the next bytes of the body; the payload pieces they complete."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while True:
            if self._state == _DATA:
                n = min(self._remaining, len(buf) - pos)
                if n == 0:
                    break
                piece = bytes(buf[pos : pos + n])
                pos += n
                self._remaining -= n
                self.checks.update(piece)
                if self._signed:
                    self._chunk_hash.update(piece)
                out.append(piece)
                if self._remaining == 0:
                    self._state = _DATA_END
            elif self._state == _DATA_END:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise IncompleteBody("aws-chunked chunk is longer than its header says")
                pos += 2
                self._end_chunk(self._chunk_hash.hexdigest())
                self._state = _SIZE
            elif self._state == _DONE:
                if pos < len(buf):
                    raise IncompleteBody("Bytes after the end of the aws-chunked body")
                break
            else:
                line = self._line(buf, pos)
                if line is None:
                    break
                pos += len(line) + 2
                if self._state == _SIZE:
                    self._start_chunk(line)
                else:
                    self._trailer_line(line)
        del buf[:pos]
        return out

    def finish(self) -> dict[str, str]:
        """Check that the body ended properly; the verified checksums (base64 by algorithm)."""
        if self._state != _DONE or self._buf:
            raise IncompleteBody()
        return self.verified

    # ---- states -------------------------------------------------------------

    def _line(self, buf: bytearray, pos: int) -> bytes | None:
        end = buf.find(b"\r\n", pos, pos + MAX_LINE + 2)
        if end < 0:
            if len(buf) - pos > MAX_LINE:
                raise IncompleteBody("aws-chunked header or trailer line is too long")
            return None
        return bytes(buf[pos:end])

    def _start_chunk(self, line: bytes) -> None:
        header = sigv4.parse_chunk_header(line, max_size=self._max_chunk)
        if self._signed and header.signature is None:
            raise SignatureDoesNotMatch("aws-chunked chunk without a chunk-signature")
        self._chunk_sig = header.signature
        self._remaining = header.size
        self._chunk_hash = hashlib.sha256()
        if header.size:
            self._state = _DATA
            return
        self._end_chunk(sigv4.EMPTY_SHA256)
        self._state = _TRAILER

    def _end_chunk(self, chunk_sha256: str) -> None:
        if self._signed and self._auth is not None and self._chunk_sig is not None:
            self._prev = sigv4.verify_chunk_signature(self._auth, self._prev, chunk_sha256, self._chunk_sig)

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_trailers()
            return
        if not self._trailer_names:
            raise IncompleteBody("aws-chunked body has trailers that were not announced")
        name, sep, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if not sep or not name:
            raise IncompleteBody("Malformed aws-chunked trailer")
        if name == "x-amz-trailer-signature":
            self._trailer_sig = value.strip()
            return
        if self._trailer_sig is not None:
            raise IncompleteBody("aws-chunked trailer after the trailer signature")
        if len(self._trailers) >= 16:
            raise IncompleteBody("Too many aws-chunked trailers")
        self._trailer_lines.update(line + b"\n")
        self._trailers[name] = value.strip()

    def _end_trailers(self) -> None:
        if self._signed_trailer and self._auth is not None:
            if self._trailer_sig is None:
                raise SignatureDoesNotMatch("aws-chunked trailer without x-amz-trailer-signature")
            sigv4.verify_trailer_signature(
                self._auth, self._prev, self._trailer_lines.hexdigest(), self._trailer_sig
            )
        values: dict[str, str] = {}
        for alg in self._trailer_names:
            value = self._trailers.get(CHECKSUM_PREFIX + alg)
            if value is not None:
                values[alg] = value
        self.verified = self.checks.finish(values)
        self._state = _DONE
