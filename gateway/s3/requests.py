"""Parsing of S3 request parts: path, query, Range, dates and conditional headers.

Everything here takes strings that came off the wire and is written for
hostile input: each parser either returns a value or raises an
:class:`~.errors.S3Error`, and bounds its own work (no regex backtracking on
attacker-sized input, no unbounded integers).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import unquote_to_bytes

from .errors import (
    InvalidArgument,
    InvalidBucketName,
    InvalidRange,
    InvalidURI,
    KeyTooLongError,
    PreconditionFailed,
)

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]
"""Request headers: a (case-insensitive or not) mapping, or a list of pairs.

A multidict (aiohttp's ``request.headers``) counts as a mapping and its
``items()`` yields every occurrence of a repeated header.
"""

QueryLike = Mapping[str, str] | Iterable[tuple[str, str]]
"""Decoded query parameters: a mapping/multidict, or a list of pairs."""

MAX_KEY_BYTES = 1024
MAX_QUERY_PARAMS = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def header_map(headers: HeadersLike) -> dict[str, list[str]]:
    """Every header value by lower-cased name, repeated headers in arrival order."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value)
    return out


def _one_header(headers: Mapping[str, list[str]], name: str) -> str | None:
    """A header's value, repeated occurrences joined by ',' as RFC 9110 allows."""
    values = headers.get(name)
    return None if values is None else ",".join(values)


# -- query ---------------------------------------------------------------------


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """The raw (still percent-encoded) ``name=value`` pieces of a query string.

    ``a`` and ``a=`` both give ``("a", "")``; empty pieces (``&&``) are skipped.
    """
    if raw_query.startswith("?"):
        raw_query = raw_query[1:]
    pairs = []
    for piece in raw_query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((name, value))
        if len(pairs) > MAX_QUERY_PARAMS:
            raise InvalidArgument("Too many query parameters")
    return pairs


def wire_bytes(text: str) -> bytes:
    """The bytes a received string stands for; never raises.

    aiohttp turns bytes that are not UTF-8 into surrogate escapes; those map
    back to the original bytes. Any other lone surrogate is kept as is
    (``surrogatepass``) so that hostile input cannot raise.
    """
    if text.isascii():
        return text.encode("ascii")
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def decode_query_component(raw: str) -> bytes:
    """Percent-decode one query name or value; ``+`` is a space, as form encoding has it.

    Python's ``urlencode`` (used by botocore for ``params``) and Go's
    ``url.Values`` send spaces as ``+``, and yarl (aiohttp's ``request.query``)
    decodes them so; signing must read the query the same way the handler does.
    Malformed escapes such as ``%zz`` are kept literally, like browsers do.
    """
    if "%" not in raw and "+" not in raw:
        return wire_bytes(raw)  # the common case, and a hot one: nothing to decode
    return unquote_to_bytes(wire_bytes(raw.replace("+", " ")))


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into (name, value) pairs, in order.

    Raises InvalidArgument on names or values that are not UTF-8.
    """
    out = []
    for name, value in split_query(raw_query):
        try:
            out.append(
                (
                    decode_query_component(name).decode("utf-8"),
                    decode_query_component(value).decode("utf-8"),
                )
            )
        except UnicodeDecodeError:
            raise InvalidArgument("Query parameters must be UTF-8") from None
    return out


# -- path, bucket and key ------------------------------------------------------

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_LEGACY_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}", re.ASCII)
_IPV4ISH = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", re.ASCII)
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# The longest raw path that can still hold a legal key: every key byte
# percent-encoded, plus a legacy bucket name and the two slashes.
_MAX_RAW_PATH = 3 * MAX_KEY_BYTES + 255 + 2


def validate_bucket_name(name: str, *, legacy: bool = False) -> None:
    """Raise InvalidBucketName unless ``name`` follows S3's bucket naming rules.

    ``legacy`` admits the pre-2018 us-east-1 names (upper case, ``_``, up to 255).
    """
    if legacy:
        ok = _LEGACY_BUCKET.fullmatch(name) is not None
    else:
        ok = (
            _BUCKET.fullmatch(name) is not None
            and ".." not in name
            and _IPV4ISH.fullmatch(name) is None
            and not name.startswith(_RESERVED_PREFIXES)
            and not name.endswith(_RESERVED_SUFFIXES)
        )
    if not ok:
        raise InvalidBucketName(extra={"BucketName": name[:255]})


def validate_key(key: str) -> None:
    """Raise unless ``key`` is a storable object key (1..1024 UTF-8 bytes, no NUL)."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("Object key is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise KeyTooLongError(extra={"Size": str(size), "MaxSizeAllowed": str(MAX_KEY_BYTES)})
    if not key:
        raise InvalidArgument("Object key must not be empty")
    if "\x00" in key:
        raise InvalidArgument("Object key must not contain NUL")


def decode_path_part(raw: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise InvalidURI()
    try:
        return unquote_to_bytes(wire_bytes(raw)).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI() from None


def parse_path(
    raw_path: str, *, legacy_bucket_names: bool = False
) -> tuple[str | None, str | None]:
    """Path-style ``(bucket, key)`` from the raw, still percent-encoded request path.

    ``/`` gives ``(None, None)``, ``/b`` and ``/b/`` give ``("b", None)``.
    The key is everything after the bucket's slash, kept byte for byte:
    ``/b//x/`` is key ``/x/`` (S3 never normalises keys, so neither do we).
    A query string, if still attached, is dropped.
    """
    path = raw_path.partition("?")[0]
    if not path.startswith("/"):
        raise InvalidURI()
    if len(path) > _MAX_RAW_PATH:
        raise KeyTooLongError()
    raw_bucket, slash, raw_key = path[1:].partition("/")
    if not raw_bucket:
        if slash:
            raise InvalidBucketName(extra={"BucketName": ""})
        return None, None
    bucket = decode_path_part(raw_bucket)
    validate_bucket_name(bucket, legacy=legacy_bucket_names)
    if not raw_key:
        return bucket, None
    key = decode_path_part(raw_key)
    validate_key(key)
    return bucket, key


# -- Range ---------------------------------------------------------------------

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
_MAX_RANGE_HEADER = 256


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` a ``Range`` header asks of an object of ``size`` bytes.

    ``None`` means "send the whole object with 200": no header, a unit other
    than ``bytes``, a syntactically invalid spec (RFC 9110 §14.2 says to
    ignore it), or several ranges. S3 documents that it "doesn't support
    retrieving multiple ranges of data per GET request" and answers those with
    the whole object (200) rather than an error or multipart/byteranges, so we
    do the same. Unsatisfiable ranges (first byte at or past the end, or a
    zero-length suffix) raise InvalidRange (416) with ``Content-Range:
    bytes */size``.
    """
    if header is None or len(header) > _MAX_RANGE_HEADER:
        return None
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if len(specs) != 1:
        return None
    m = _RANGE_SPEC.fullmatch(specs[0])
    if m is None or m.group(0) == "-":
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if size == 0 and suffix > 0:
            return None  # nothing to select: an empty object is its own "last n bytes"
        if suffix == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    end = size if not last else min(int(last) + 1, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> InvalidRange:
    return InvalidRange(
        extra={"RangeRequested": header, "ActualObjectSize": str(size)},
        headers={"Content-Range": f"bytes */{size}"},
    )


_COPY_RANGE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{1,19})", re.ASCII)


def parse_copy_range(header: str | None, size: int) -> tuple[int, int]:
    """``[start, end)`` of ``x-amz-copy-source-range: bytes=first-last`` (the whole source if absent).

    Both offsets are required and must lie inside the source, as S3 has it.
    """
    if header is None:
        return 0, size
    m = _COPY_RANGE.fullmatch(header.strip())
    if m is None or int(m.group(1)) > int(m.group(2)):
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes to copy",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": header[:64]},
        )
    first, last = int(m.group(1)), int(m.group(2))
    if last >= size:
        raise InvalidRange(
            "The requested range is not satisfiable",
            extra={"RangeRequested": header[:64], "ActualObjectSize": str(size)},
        )
    return first, last + 1


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` value of a 206 answer for ``[start, end)``."""
    return f"bytes {start}-{end - 1}/{size}"


# -- list parameters -----------------------------------------------------------

_MAX_PARAM_CHARS = 4096
_MAX_KEYS_LIMIT = 1000
_INT32_MAX = 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]{1,12}", re.ASCII)


@dataclass(frozen=True, slots=True)
class ListParams:
    """ListObjects (V1) / ListObjectsV2 query parameters, validated.

    For V2, ``continuation_token`` (when set) takes precedence over
    ``start_after``; V1 uses ``marker``. Parameters of the other version are
    ignored, as S3 ignores them.
    """

    version: Literal[1, 2] = 2
    prefix: str = ""
    delimiter: str | None = None
    max_keys: int = _MAX_KEYS_LIMIT
    """0..1000: larger requests are clamped to 1000, as S3 does."""
    continuation_token: str | None = None
    start_after: str | None = None
    marker: str | None = None
    encoding_type: Literal["url"] | None = None
    fetch_owner: bool = False


# The query parameters of ListObjects and ListObjectsV2.
LIST_PARAMS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "marker",
        "encoding-type",
        "fetch-owner",
    }
)


def _collect(query: QueryLike) -> dict[str, str]:
    pairs = query.items() if isinstance(query, Mapping) else query
    out: dict[str, str] = {}
    for n, (name, value) in enumerate(pairs):
        if n >= MAX_QUERY_PARAMS:
            raise InvalidArgument("Too many query parameters")
        if name not in LIST_PARAMS:
            continue
        if name in out:
            raise _bad_arg(name, value, f"Parameter {name} was given more than once")
        if len(value) > _MAX_PARAM_CHARS:
            raise _bad_arg(name, value[:64], f"Parameter {name} is too long")
        out[name] = value
    return out


def _bad_arg(name: str, value: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, extra={"ArgumentName": name, "ArgumentValue": value})


def _max_keys(raw: str | None) -> int:
    if raw is None:
        return _MAX_KEYS_LIMIT
    text = raw.strip()
    if _INTEGER.fullmatch(text) is None:
        raise _bad_arg("max-keys", raw, "Provided max-keys not an integer or within integer range")
    n = int(text)
    if not 0 <= n <= _INT32_MAX:
        raise _bad_arg(
            "max-keys", raw, "Argument maxKeys must be an integer between 0 and 2147483647"
        )
    return min(n, _MAX_KEYS_LIMIT)


def _flag(name: str, raw: str | None) -> bool:
    if raw is None:
        return False
    low = raw.strip().lower()
    if low not in ("true", "false"):
        raise _bad_arg(name, raw, f"Invalid value for {name}: expecting true or false")
    return low == "true"


def parse_list_params(query: QueryLike) -> ListParams:
    """Validate the listing parameters of ``GET /bucket``; unknown parameters are ignored."""
    q = _collect(query)
    list_type = q.get("list-type")
    if list_type not in (None, "2"):
        raise _bad_arg("list-type", list_type, "Invalid List Type specified in Request")
    encoding = q.get("encoding-type")
    if encoding is not None and encoding.lower() != "url":
        raise _bad_arg("encoding-type", encoding, "Invalid Encoding Method specified in Request")
    token = q.get("continuation-token")
    v2 = list_type == "2"
    if v2 and token is not None and not token:
        raise _bad_arg("continuation-token", token, "The continuation token provided is incorrect")
    return ListParams(
        version=2 if v2 else 1,
        prefix=q.get("prefix", ""),
        delimiter=q.get("delimiter") or None,
        max_keys=_max_keys(q.get("max-keys")),
        continuation_token=token if v2 else None,
        start_after=(q.get("start-after") or None) if v2 else None,
        marker=None if v2 else (q.get("marker") or None),
        encoding_type="url" if encoding is not None else None,
        fetch_owner=_flag("fetch-owner", q.get("fetch-owner")) if v2 else False,
    )


@dataclass(frozen=True, slots=True)
class MarkerListing:
    """Query of ListMultipartUploads / ListObjectVersions: markers instead of tokens."""

    prefix: str = ""
    delimiter: str = ""
    key_marker: str = ""
    id_marker: str = ""
    """``upload-id-marker`` or ``version-id-marker``."""
    max_items: int = _MAX_KEYS_LIMIT
    encoding_type: Literal["url"] | None = None


def parse_marker_listing(query: QueryLike, id_name: str, max_name: str) -> MarkerListing:
    """Validate the query of ``?uploads`` (``upload-id-marker``, ``max-uploads``) or
    ``?versions`` (``version-id-marker``, ``max-keys``); unknown parameters are ignored."""
    pairs = query.items() if isinstance(query, Mapping) else query
    names = ("prefix", "delimiter", "key-marker", id_name, max_name, "encoding-type")
    q: dict[str, str] = {}
    for n, (name, value) in enumerate(pairs):
        if n >= MAX_QUERY_PARAMS:
            raise InvalidArgument("Too many query parameters")
        if name in names:
            if name in q or len(value) > _MAX_PARAM_CHARS:
                raise _bad_arg(name, value[:64], f"Parameter {name} is repeated or too long")
            q[name] = value
    encoding = q.get("encoding-type")
    if encoding is not None and encoding.lower() != "url":
        raise _bad_arg("encoding-type", encoding, "Invalid Encoding Method specified in Request")
    raw_max = q.get(max_name)
    try:
        max_items = _max_keys(raw_max)
    except InvalidArgument:
        message = f"Argument {max_name} must be an integer between 0 and 2147483647"
        raise _bad_arg(max_name, raw_max or "", message) from None
    return MarkerListing(
        prefix=q.get("prefix", ""),
        delimiter=q.get("delimiter", ""),
        key_marker=q.get("key-marker", ""),
        id_marker=q.get(id_name, ""),
        max_items=max_items,
        encoding_type="url" if encoding is not None else None,
    )


# -- dates ---------------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_T = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_M = r"([A-Z][a-z]{2})"
# RFC 9110 §5.6.7: IMF-fixdate, plus the obsolete RFC 850 and asctime forms
# that recipients must still accept.
# The IMF form also takes RFC 2822's numeric zones: Python's email.utils
# (and so botocore's Date header) writes "-0000" where HTTP says "GMT".
_ZONE = r"(GMT|UTC|UT|[+-][0-9]{4})"
_IMF = re.compile(rf"([A-Z][a-z]{{2}}), ([0-9]{{1,2}}) {_M} ([0-9]{{4}}) {_T} {_ZONE}", re.ASCII)
_RFC850 = re.compile(rf"([A-Z][a-z]{{5,8}}), ([0-9]{{2}})-{_M}-([0-9]{{2}}) {_T} GMT", re.ASCII)
_ASCTIME = re.compile(rf"([A-Z][a-z]{{2}}) {_M} ([ 0-9][0-9]) {_T} ([0-9]{{4}})", re.ASCII)


def _utc(ts: float) -> datetime:
    # Arithmetic rather than fromtimestamp(): no OS time functions, any epoch.
    return _EPOCH + timedelta(seconds=ts)


@functools.lru_cache(maxsize=1024)  # every GetObject formats its object's Last-Modified
def http_date(ts: float) -> str:
    """RFC 9110 IMF-fixdate of an epoch time, whole seconds: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    dt = _utc(math.floor(ts))
    return (
        f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} GMT"
    )


def iso8601(ts: float) -> str:
    """S3's timestamp form, milliseconds and ``Z``: ``2009-10-12T17:50:30.000Z``."""
    dt = _EPOCH + timedelta(milliseconds=math.floor(ts * 1000))
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def parse_http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP-date in any of its three forms, or None if invalid.

    RFC 850's two-digit years are read as 1970..2069.
    """
    s = value.strip()
    if len(s) > 40:
        return None
    offset = 0
    if m := _IMF.fullmatch(s):
        day_name, day, mon, year, hh, mm, ss, zone = m.groups()
        if zone[0] in "+-":
            sign = -1 if zone[0] == "-" else 1
            offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        if day_name not in _DAYS:
            return None
    elif m := _RFC850.fullmatch(s):
        day_name, day, mon, yy, hh, mm, ss = m.groups()
        if day_name not in _LONG_DAYS:
            return None
        year = str((1900 if int(yy) >= 70 else 2000) + int(yy))
    elif m := _ASCTIME.fullmatch(s):
        day_name, mon, day, hh, mm, ss, year = m.groups()
        if day_name not in _DAYS:
            return None
    else:
        return None
    if mon not in _MONTHS:
        return None
    try:
        month = _MONTHS.index(mon) + 1
        dt = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError:
        return None
    return (dt - _EPOCH).total_seconds() - offset


# -- conditional requests ------------------------------------------------------


def _etag_list(value: str) -> list[str]:
    """Entity tags of an If-Match/If-None-Match value; weak ones keep their ``W/``.

    S3 clients often send ETags unquoted, so quotes are optional here.
    """
    tags = []
    for raw in value.split(","):
        tag = raw.strip()
        weak = tag.startswith("W/")
        if weak:
            tag = tag[2:]
        if len(tag) >= 2 and tag[0] == tag[-1] == '"':
            tag = tag[1:-1]
        if tag:
            tags.append("W/" + tag if weak else tag)
    return tags


def _matches(value: str, etag: str, *, weak: bool) -> bool:
    tags = _etag_list(value)
    if "*" in tags:
        return True
    if weak:
        tags = [t.removeprefix("W/") for t in tags]
    return etag in tags


def _single_date(headers: Mapping[str, list[str]], name: str) -> float | None:
    values = headers.get(name)
    if values is None or len(values) != 1:
        return None  # RFC 9110: ignore the field if absent, repeated or invalid
    return parse_http_date(values[0])


def evaluate_conditions(
    headers: HeadersLike, etag: str, last_modified: float
) -> Literal["not_modified"] | None:
    """Evaluate If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since for GET/HEAD.

    The order is RFC 9110 §13.2.2's, which is also what S3 documents: a true
    If-Match makes If-Unmodified-Since irrelevant (S3: "If-Match true and
    If-Unmodified-Since false → 200"), and an If-None-Match that is present
    makes If-Modified-Since irrelevant (S3: "If-None-Match false and
    If-Modified-Since true → 304"). Raises PreconditionFailed (412) with the
    failing ``Condition``; returns ``"not_modified"`` for a 304; None to
    proceed. ``etag`` may be quoted or not; times compare in whole seconds,
    the precision of HTTP dates.
    """
    h = header_map(headers)
    tag = etag.strip().strip('"')
    mtime = math.floor(last_modified)
    if_match = _one_header(h, "if-match")
    if if_match is not None:
        if not _matches(if_match, tag, weak=False):
            raise PreconditionFailed(extra={"Condition": "If-Match"})
    else:
        since = _single_date(h, "if-unmodified-since")
        if since is not None and mtime > since:
            raise PreconditionFailed(extra={"Condition": "If-Unmodified-Since"})
    if_none_match = _one_header(h, "if-none-match")
    if if_none_match is not None:
        return "not_modified" if _matches(if_none_match, tag, weak=True) else None
    since = _single_date(h, "if-modified-since")
    if since is not None and mtime <= since:
        return "not_modified"
    return None
