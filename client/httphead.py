"""HTTP/1.1 response heads, sans I/O: the parsing half of the block fetcher.

The peer is untrusted until its head is parsed: the head is capped in size,
must use CRLF line ends, and must frame its body unambiguously (one
Content-Length of plain digits). Anything else is a :class:`BadHead`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEAD_MAX = 16 * 1024
"""Most bytes a response head may take, its blank line included."""
END = b"\r\n\r\n"

_STATUS = re.compile(r"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]{1,18}")  # 18 digits: beyond any real block, and no huge ints


class BadHead(ValueError):
    """The bytes are not a well-formed, unambiguous HTTP/1.x response head."""


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    length: int | None
    """Content-Length (None: absent)."""
    content_type: str = ""
    """The media type, lower-case, without parameters."""
    close: bool = False
    """The server will close the connection after this answer."""
    transfer_encoded: bool = False
    """A Transfer-Encoding (chunked) frames the body instead of Content-Length."""


def head_end(buf: bytes | bytearray, filled: int, before: int) -> int:
    """Index just past the blank line ending the head in ``buf[:filled]``, or -1.

    ``before`` is how much of ``buf`` was already searched, so a head split
    across reads is scanned once.
    """
    at = buf.find(END, max(0, before - len(END) + 1), filled)
    return -1 if at < 0 else at + len(END)


def parse_head(raw: bytes) -> Head:
    """Parse a complete head (status line, header lines, blank line)."""
    if len(raw) > HEAD_MAX:
        raise BadHead(f"response head over {HEAD_MAX} bytes")
    if not raw.endswith(END):
        raise BadHead("response head does not end with a blank line")
    text = raw[: -len(END)].decode("latin-1")
    lines = text.split("\r\n")
    m = _STATUS.fullmatch(lines[0])
    if m is None:
        raise BadHead(f"malformed status line {lines[0][:80]!r}")
    status = int(m.group(2))
    if status < 200:
        raise BadHead(f"unexpected interim answer {status}")
    close = m.group(1) == "0"  # HTTP/1.0 closes unless it says keep-alive
    length: int | None = None
    content_type = ""
    transfer_encoded = False
    for line in lines[1:]:
        if "\n" in line or "\r" in line:
            raise BadHead("bare CR or LF in the response head")
        name, colon, value = line.partition(":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise BadHead(f"malformed header line {line[:80]!r}")
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length":
            if length is not None:
                raise BadHead("more than one Content-Length")
            if _DIGITS.fullmatch(value) is None:
                raise BadHead(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            transfer_encoded = True
        elif name == "content-type":
            content_type = value.partition(";")[0].strip().lower()
        elif name == "connection":
            tokens = {t.strip().lower() for t in value.split(",")}
            close = "close" in tokens or (close and "keep-alive" not in tokens)
    return Head(status, length, content_type, close, transfer_encoded)


def request_head(target: str, headers: dict[str, str]) -> bytes:
    """A GET request head; ValueError for a header value that would split the head."""
    lines = [f"GET {target} HTTP/1.1"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} contains a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
