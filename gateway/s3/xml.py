"""S3 XML bodies: building responses and safely parsing request bodies.

Building is done with a tiny string serializer rather than ElementTree,
because S3 keys are arbitrary Unicode and ElementTree gets two things wrong
for them: it writes ``\\r`` raw (a parser then reads it back as ``\\n``) and
writes XML 1.0-illegal characters (``\\x01``...) raw, which no parser
accepts. Here ``\\r``/``\\n`` become character references and illegal
characters ``&#xN;`` references, which is what S3 does; strict parsers still
reject those, which is why S3 recommends, and the AWS SDKs always send,
``encoding-type=url`` (then keys are percent-encoded and plain ASCII).

Parsing uses expat directly with every DTD feature refused (no DOCTYPE, no
entity declarations), a size cap and element/depth caps, so entity
expansion and deep-nesting bombs cannot start.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote
from xml.parsers import expat

from .errors import EntityTooLarge, InvalidPartOrder, MalformedXML, S3Error
from .requests import ListParams, MarkerListing, iso8601

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_DELETE_OBJECTS = 1000
MAX_PARTS = 10000


def _escape_table() -> dict[int, str]:
    table = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;"}
    for c in (*range(0x20), 0xFFFE, 0xFFFF, *range(0xD800, 0xE000)):
        if c != 0x09:
            table[c] = f"&#{c};" if c in (0x0A, 0x0D) else f"&#x{c:X};"
    return table


_ESCAPES = _escape_table()


def _esc(text: str) -> str:
    return text.translate(_ESCAPES)


def _el(tag: str, value: str | int | bool) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = _esc(str(value))
    return f"<{tag}>{text}</{tag}>" if text else f"<{tag}/>"


def _doc(root: str, body: list[str], *, ns: bool = True) -> bytes:
    xmlns = f' xmlns="{S3_NS}"' if ns else ""
    return f"{_DECL}<{root}{xmlns}>{''.join(body)}</{root}>".encode()


def url_encode(text: str) -> str:
    """Percent-encode a key or prefix for ``encoding-type=url`` answers ('/' kept).

    Spaces become ``%20`` and ``+`` becomes ``%2B``, which both ``unquote``
    and botocore's ``unquote_plus`` read back correctly.
    """
    return quote(text.encode("utf-8", "surrogatepass"), safe="/")


def quote_etag(etag: str) -> str:
    """An ETag in the quoted form S3 sends (``"abc"``), whether or not it was quoted."""
    return etag if etag.startswith('"') and etag.endswith('"') and len(etag) >= 2 else f'"{etag}"'


# -- response data ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """A bucket or object owner, as S3 lists it."""

    id: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class ListingEntry:
    """One object in a listing."""

    key: str
    size: int
    etag: str
    """With or without quotes; always sent quoted."""
    last_modified: float
    """Epoch seconds."""
    storage_class: str = "STANDARD"


class ListingEntryLike(Protocol):
    """Anything with a listing entry's fields (``client.ListEntry`` fits)."""

    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def etag(self) -> str: ...
    @property
    def last_modified(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BucketEntry:
    """One bucket in ListAllMyBucketsResult."""

    name: str
    created: float
    """Epoch seconds."""


# -- builders --------------------------------------------------------------------


def error_xml(err: S3Error, request_id: str = "", host_id: str = "") -> bytes:
    """``<Error>`` body of an S3Error (no namespace, as S3 sends it)."""
    body = [_el("Code", err.code), _el("Message", err.message)]
    if err.resource is not None:
        body.append(_el("Resource", err.resource))
    body += [_el(name, value) for name, value in err.extra.items() if _is_tag(name)]
    body.append(_el("RequestId", request_id))
    if host_id:
        body.append(_el("HostId", host_id))
    return _doc("Error", body, ns=False)


def _is_tag(name: str) -> bool:
    # Extra fields come from our own code, but a tag name is never escaped.
    bare = name.replace("-", "").replace("_", "")
    return bare.isascii() and bare.isalnum() and name[:1].isalpha()


def list_buckets_xml(
    buckets: Sequence[BucketEntry | tuple[str, float]], owner: Owner | None = None
) -> bytes:
    """ListAllMyBucketsResult (``GET /``); buckets as BucketEntry or ``(name, created)``."""
    items = []
    for b in buckets:
        name, created = (b.name, b.created) if isinstance(b, BucketEntry) else b
        items.append(f"<Bucket>{_el('Name', name)}{_el('CreationDate', iso8601(created))}</Bucket>")
    head = [_owner(owner)] if owner is not None else []
    return _doc("ListAllMyBucketsResult", [*head, f"<Buckets>{''.join(items)}</Buckets>"])


def _owner(owner: Owner) -> str:
    return f"<Owner>{_el('ID', owner.id)}{_el('DisplayName', owner.display_name)}</Owner>"


def _contents(entry: ListingEntryLike, enc: bool, owner: Owner | None) -> str:
    parts = [
        _el("Key", url_encode(entry.key) if enc else entry.key),
        _el("LastModified", iso8601(entry.last_modified)),
        _el("ETag", quote_etag(entry.etag)),
        _el("Size", int(entry.size)),
    ]
    if owner is not None:
        parts.append(_owner(owner))
    parts.append(_el("StorageClass", getattr(entry, "storage_class", "STANDARD")))
    return f"<Contents>{''.join(parts)}</Contents>"


def _prefixes(prefixes: Sequence[str], enc: bool) -> list[str]:
    return [
        f"<CommonPrefixes>{_el('Prefix', url_encode(p) if enc else p)}</CommonPrefixes>"
        for p in prefixes
    ]


def list_objects_v2_xml(
    bucket: str,
    params: ListParams,
    entries: Sequence[ListingEntryLike],
    prefixes: Sequence[str],
    *,
    truncated: bool,
    next_token: str | None = None,
    owner: Owner | None = None,
) -> bytes:
    """ListBucketResult for ListObjectsV2 (``GET /bucket?list-type=2``).

    ``prefixes`` are the common prefixes; ``next_token`` the opaque
    NextContinuationToken (sent only when ``truncated``). Owner appears in
    each Contents only when ``params.fetch_owner`` and an owner is given.
    With ``encoding-type=url``, Key, Prefix, Delimiter and StartAfter are
    percent-encoded, as S3 documents.
    """
    enc = params.encoding_type == "url"

    def e(s: str) -> str:
        return url_encode(s) if enc else s

    body = [_el("Name", bucket), _el("Prefix", e(params.prefix))]
    if params.start_after is not None:
        body.append(_el("StartAfter", e(params.start_after)))
    if params.continuation_token is not None:
        body.append(_el("ContinuationToken", params.continuation_token))
    if truncated and next_token is not None:
        body.append(_el("NextContinuationToken", next_token))
    body.append(_el("KeyCount", len(entries) + len(prefixes)))
    body.append(_el("MaxKeys", params.max_keys))
    if params.delimiter is not None:
        body.append(_el("Delimiter", e(params.delimiter)))
    if enc:
        body.append(_el("EncodingType", "url"))
    body.append(_el("IsTruncated", truncated))
    show_owner = owner if params.fetch_owner else None
    body += [_contents(entry, enc, show_owner) for entry in entries]
    body += _prefixes(prefixes, enc)
    return _doc("ListBucketResult", body)


def list_objects_v1_xml(
    bucket: str,
    params: ListParams,
    entries: Sequence[ListingEntryLike],
    prefixes: Sequence[str],
    *,
    truncated: bool,
    next_marker: str | None = None,
    owner: Owner | None = None,
) -> bytes:
    """ListBucketResult for ListObjects V1 (``GET /bucket``).

    NextMarker is sent only when a delimiter was given and the page is
    truncated (S3's rule; otherwise clients resume from the last Key). When
    ``next_marker`` is None it is the greatest of the last key and the last
    common prefix, so resuming with it as ``marker`` skips the whole
    rolled-up prefix. Owner, when given, is in every Contents, as in S3's V1.
    """
    enc = params.encoding_type == "url"

    def e(s: str) -> str:
        return url_encode(s) if enc else s

    body = [
        _el("Name", bucket),
        _el("Prefix", e(params.prefix)),
        _el("Marker", e(params.marker or "")),
        _el("MaxKeys", params.max_keys),
    ]
    if params.delimiter is not None:
        body.append(_el("Delimiter", e(params.delimiter)))
        if next_marker is None:
            last = [entries[-1].key] if entries else []
            last += prefixes[-1:]
            next_marker = max(last, default=None)
        if truncated and next_marker is not None:
            body.append(_el("NextMarker", e(next_marker)))
    if enc:
        body.append(_el("EncodingType", "url"))
    body.append(_el("IsTruncated", truncated))
    body += [_contents(entry, enc, owner) for entry in entries]
    body += _prefixes(prefixes, enc)
    return _doc("ListBucketResult", body)


def location_xml(region: str) -> bytes:
    """GetBucketLocation answer; us-east-1 (or "") is the empty constraint, as S3 has it."""
    return _doc("LocationConstraint", [] if region in ("", "us-east-1") else [_esc(region)])


def delete_result_xml(
    deleted: Sequence[str], errors: Sequence[tuple[str, S3Error]], *, url: bool = False
) -> bytes:
    """DeleteResult of a multi-object delete (pass no ``deleted`` keys in quiet mode)."""

    def e(s: str) -> str:
        return url_encode(s) if url else s

    body = [f"<Deleted>{_el('Key', e(k))}</Deleted>" for k in deleted]
    body += [
        f"<Error>{_el('Key', e(k))}{_el('Code', err.code)}{_el('Message', err.message)}</Error>"
        for k, err in errors
    ]
    return _doc("DeleteResult", body)


# -- safe parsing ----------------------------------------------------------------


class _Refused(Exception):
    """Raised from expat callbacks to abort a parse."""


class _TreeBuilder:
    """Builds ElementTree elements from expat events, with local (namespace-free) tags."""

    def __init__(self, max_elements: int, max_depth: int) -> None:
        self.root: ET.Element | None = None
        self._stack: list[tuple[ET.Element, list[str]]] = []
        self._left = max_elements
        self._max_depth = max_depth

    def start(self, name: str, _attrs: object) -> None:
        self._left -= 1
        if self._left < 0 or len(self._stack) >= self._max_depth:
            raise _Refused("document too large or too deep")
        el = ET.Element(name.rpartition(" ")[2])
        if self._stack:
            self._stack[-1][0].append(el)
        else:
            self.root = el
        self._stack.append((el, []))

    def end(self, _name: str) -> None:
        el, texts = self._stack.pop()
        el.text = "".join(texts)

    def data(self, text: str) -> None:
        if self._stack:
            self._stack[-1][1].append(text)


def _refuse(*_args: object) -> None:
    raise _Refused("DTDs and entities are not allowed")


def parse_xml(
    body: bytes, max_bytes: int, *, max_elements: int = 100_000, max_depth: int = 16
) -> ET.Element:
    """Parse a request body into an element tree, refusing anything dangerous.

    Tags come back without their namespace (``{ns}Key`` is ``Key``); each
    element's ``text`` is all its own character data. Bodies over
    ``max_bytes`` raise EntityTooLarge; DOCTYPEs, entity declarations,
    ill-formed XML and over-large or over-deep trees raise MalformedXML.
    """
    if len(body) > max_bytes:
        raise EntityTooLarge(extra={"MaxSizeAllowed": str(max_bytes)})
    builder = _TreeBuilder(max_elements, max_depth)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.NotationDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    try:
        parser.Parse(bytes(body), True)
    except (expat.ExpatError, _Refused, ValueError, UnicodeError):
        raise MalformedXML() from None
    if builder.root is None:
        raise MalformedXML()
    return builder.root


def _children(el: ET.Element, allowed: frozenset[str]) -> list[ET.Element]:
    kids = list(el)
    if any(k.tag not in allowed or len(k) for k in kids):
        raise MalformedXML()
    return kids


def _optional(kids: list[ET.Element], tag: str) -> str | None:
    found = [k.text or "" for k in kids if k.tag == tag]
    if len(found) > 1:
        raise MalformedXML()
    return found[0] if found else None


def _required(kids: list[ET.Element], tag: str) -> str:
    value = _optional(kids, tag)
    if value is None:
        raise MalformedXML()
    return value


@dataclass(frozen=True, slots=True)
class ObjectToDelete:
    """One ``<Object>`` of a DeleteObjects body; the key exactly as sent."""

    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """A parsed DeleteObjects (``POST /bucket?delete``) body."""

    objects: tuple[ObjectToDelete, ...]
    quiet: bool = False


_OBJECT_FIELDS = frozenset({"Key", "VersionId", "ETag", "LastModifiedTime", "Size"})


def parse_delete(body: bytes, max_bytes: int = 2 * 1024 * 1024) -> DeleteRequest:
    """Parse ``<Delete><Quiet/><Object><Key/>...</Object>...</Delete>`` (1..1000 objects).

    Keys are not validated here: S3 reports a bad key as a per-key error.
    """
    root = parse_xml(body, max_bytes)
    if root.tag != "Delete":
        raise MalformedXML()
    kids = list(root)
    if any(k.tag not in ("Quiet", "Object") for k in kids):
        raise MalformedXML()
    quiet_nodes = [k for k in kids if k.tag == "Quiet"]
    objects = [k for k in kids if k.tag == "Object"]
    if len(quiet_nodes) > 1 or not 1 <= len(objects) <= MAX_DELETE_OBJECTS:
        raise MalformedXML()
    quiet = False
    if quiet_nodes:
        flag = (quiet_nodes[0].text or "").strip().lower()
        if flag not in ("true", "false") or len(quiet_nodes[0]):
            raise MalformedXML()
        quiet = flag == "true"
    out = []
    for obj in objects:
        fields = _children(obj, _OBJECT_FIELDS)
        out.append(ObjectToDelete(_required(fields, "Key"), _optional(fields, "VersionId")))
    return DeleteRequest(tuple(out), quiet)


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload body."""

    part_number: int
    etag: str
    """Without surrounding quotes."""


_PART_FIELDS = frozenset(
    {
        "PartNumber",
        "ETag",
        "ChecksumCRC32",
        "ChecksumCRC32C",
        "ChecksumCRC64NVME",
        "ChecksumSHA1",
        "ChecksumSHA256",
    }
)


def parse_complete_multipart(
    body: bytes, max_bytes: int = 4 * 1024 * 1024
) -> tuple[CompletedPart, ...]:
    """Parse ``<CompleteMultipartUpload><Part><PartNumber/><ETag/></Part>...``.

    Part numbers must be 1..10000 and strictly ascending (InvalidPartOrder
    otherwise, as S3); checksum fields are accepted and ignored.
    """
    root = parse_xml(body, max_bytes)
    if root.tag != "CompleteMultipartUpload":
        raise MalformedXML()
    parts = list(root)
    if not 1 <= len(parts) <= MAX_PARTS or any(p.tag != "Part" for p in parts):
        raise MalformedXML()
    out: list[CompletedPart] = []
    for part in parts:
        fields = _children(part, _PART_FIELDS)
        number = _required(fields, "PartNumber").strip()
        etag = _required(fields, "ETag").strip().strip('"')
        if not (number.isascii() and number.isdigit() and len(number) <= 5) or not etag:
            raise MalformedXML()
        n = int(number)
        if not 1 <= n <= MAX_PARTS:
            raise MalformedXML()
        if out and n <= out[-1].part_number:
            raise InvalidPartOrder()
        out.append(CompletedPart(n, etag))
    return tuple(out)


# -- multipart upload and version listings -------------------------------------------


class PartLike(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def etag(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def last_modified(self) -> float: ...


class UploadLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def upload_id(self) -> str: ...
    @property
    def initiated(self) -> float: ...


class VersionLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def version_id(self) -> str: ...
    @property
    def etag(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def last_modified(self) -> float: ...
    @property
    def is_latest(self) -> bool: ...
    @property
    def delete_marker(self) -> bool: ...


def list_parts_xml(
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[PartLike],
    *,
    marker: int,
    max_parts: int,
    truncated: bool,
    next_marker: int,
) -> bytes:
    """ListPartsResult."""
    body = [
        _el("Bucket", bucket),
        _el("Key", key),
        _el("UploadId", upload_id),
        _el("PartNumberMarker", marker),
        _el("NextPartNumberMarker", next_marker),
        _el("MaxParts", max_parts),
        _el("IsTruncated", truncated),
        _el("StorageClass", "STANDARD"),
    ]
    for p in parts:
        fields = [
            _el("PartNumber", p.number),
            _el("LastModified", iso8601(p.last_modified)),
            _el("ETag", quote_etag(p.etag)),
            _el("Size", p.size),
        ]
        body.append(f"<Part>{''.join(fields)}</Part>")
    return _doc("ListPartsResult", body)


def _marker_head(bucket: str, q: MarkerListing, id_tag: str, max_tag: str) -> list[str]:
    enc = q.encoding_type == "url"

    def e(s: str) -> str:
        return url_encode(s) if enc else s

    body = [_el("Bucket" if id_tag == "UploadIdMarker" else "Name", bucket), _el("Prefix", e(q.prefix))]
    body += [_el("KeyMarker", e(q.key_marker)), _el(id_tag, q.id_marker), _el(max_tag, q.max_items)]
    if q.delimiter:
        body.append(_el("Delimiter", e(q.delimiter)))
    if enc:
        body.append(_el("EncodingType", "url"))
    return body


def _next_markers(id_tag: str, truncated: bool, next_key: str, next_id: str, enc: bool) -> list[str]:
    if not truncated:
        return [_el("IsTruncated", False)]
    key = url_encode(next_key) if enc else next_key
    return [_el("NextKeyMarker", key), _el(f"Next{id_tag}", next_id), _el("IsTruncated", True)]


def list_uploads_xml(
    bucket: str,
    q: MarkerListing,
    uploads: Sequence[UploadLike],
    prefixes: Sequence[str],
    *,
    truncated: bool,
    next_key_marker: str,
    next_upload_id_marker: str,
) -> bytes:
    """ListMultipartUploadsResult."""
    enc = q.encoding_type == "url"
    body = _marker_head(bucket, q, "UploadIdMarker", "MaxUploads")
    body += _next_markers("UploadIdMarker", truncated, next_key_marker, next_upload_id_marker, enc)
    for u in uploads:
        fields = [
            _el("Key", url_encode(u.key) if enc else u.key),
            _el("UploadId", u.upload_id),
            _el("StorageClass", "STANDARD"),
            _el("Initiated", iso8601(u.initiated)),
        ]
        body.append(f"<Upload>{''.join(fields)}</Upload>")
    body += _prefixes(prefixes, enc)
    return _doc("ListMultipartUploadsResult", body)


def list_versions_xml(
    bucket: str,
    q: MarkerListing,
    versions: Sequence[VersionLike],
    prefixes: Sequence[str],
    *,
    truncated: bool,
    next_key_marker: str,
    next_version_id_marker: str,
) -> bytes:
    """ListVersionsResult: versions and delete markers in the order given."""
    enc = q.encoding_type == "url"
    body = _marker_head(bucket, q, "VersionIdMarker", "MaxKeys")
    body += _next_markers("VersionIdMarker", truncated, next_key_marker, next_version_id_marker, enc)
    for v in versions:
        fields = [
            _el("Key", url_encode(v.key) if enc else v.key),
            _el("VersionId", v.version_id),
            _el("IsLatest", v.is_latest),
            _el("LastModified", iso8601(v.last_modified)),
        ]
        if v.delete_marker:
            body.append(f"<DeleteMarker>{''.join(fields)}</DeleteMarker>")
            continue
        fields += [_el("ETag", quote_etag(v.etag)), _el("Size", v.size), _el("StorageClass", "STANDARD")]
        body.append(f"<Version>{''.join(fields)}</Version>")
    body += _prefixes(prefixes, enc)
    return _doc("ListVersionsResult", body)
