"""AWS Signature Version 4 verification for S3 (header and presigned-URL forms).

Theory of operation. A client signs a *canonical request* built from what it
is about to send; we rebuild the same string from what we received and
compare HMACs. The hard part is rebuilding it exactly:

* The URI is the path as sent, *not* normalised (S3 keeps ``//`` and ``.``
  segments, and botocore's ``S3SigV4Auth`` signs the path verbatim). Each
  ``/``-separated segment is percent-decoded and re-encoded with the AWS
  rules (everything but ``A-Za-z0-9-_.~`` as ``%XX``), so a client that sent
  ``(`` raw and one that sent ``%28`` both canonicalise to ``%28``, while an
  encoded ``%2F`` inside a segment stays ``%2F``.
* The query is decoded (``+`` is a space, see ``requests.decode_query_component``),
  re-encoded the same way, sorted by name then value; ``a`` becomes ``a=``.
* Header values are trimmed with inner whitespace runs collapsed; repeated
  headers are joined by ``,``.

Everything is pure: the clock (``now``, epoch seconds) and the secret lookup
are passed in. Malformed input raises the S3 error S3 itself sends.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeGuard, cast
from urllib.parse import quote, unquote_to_bytes

from .errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    IncompleteBody,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)
from .requests import (
    HeadersLike,
    decode_query_component,
    header_map,
    iso8601,
    parse_http_date,
    split_query,
    wire_bytes,
)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 900.0
"""S3 refuses requests more than 15 minutes away from its clock."""
MAX_EXPIRES_SECONDS = 604800
"""A presigned URL lives at most seven days."""

_PAYLOAD_CLAIMS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_TRAILER}
)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z", re.ASCII)
_DATE8 = re.compile(r"[0-9]{8}", re.ASCII)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+", re.ASCII)
_ACCESS_KEY = re.compile(r"[!-~]{1,128}", re.ASCII)  # printable ASCII, no space, no '/'
_REGION = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
_MAX_AUTH_HEADER = 4096
_MAX_SIGNED_HEADERS = 64
_AWS_SAFE = "-_.~"  # with letters and digits: RFC 3986 "unreserved", never encoded
_UNRESERVED = re.compile(rb"[A-Za-z0-9_.~-]*", re.ASCII)
_UNRESERVED_PATH = re.compile(r"[A-Za-z0-9_.~/-]*", re.ASCII)
_ONE_AUTH_ONLY = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
    "Signature query string parameter or the Authorization header should be specified"
)
_UNSUPPORTED_AUTH = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
)
_CREDENTIAL_SHAPE = 'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'


# -- data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """The ``Credential=`` value: access key and the scope it signed with."""

    access_key: str
    date: str
    """``YYYYMMDD``; must equal the request timestamp's date."""
    region: str
    service: str

    @property
    def scope(self) -> str:
        """``date/region/service/aws4_request``, as in the string to sign."""
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True, slots=True)
class AuthHeader:
    """A parsed ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    credential: Credential
    signed_headers: tuple[str, ...]
    """Lower-case header names, in the order the client listed them."""
    signature: str
    """64 lower-case hex digits."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What verification needs of an HTTP request, as received."""

    method: str
    raw_path: str
    """The request target's path, still percent-encoded (aiohttp: ``request.raw_path``;
    a ``?query`` left attached is split off and used when ``raw_query`` is empty)."""
    raw_query: str = ""
    """The query string as received, without ``?`` (aiohttp: ``request.query_string``
    is *decoded*; use ``request.rel_url.raw_query_string``)."""
    headers: HeadersLike = ()


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A verified request: who signed it, and what is needed to check its body later."""

    access_key: str
    region: str
    service: str
    amz_date: str
    """The signed timestamp, ``YYYYMMDDTHHMMSSZ``."""
    scope: str
    signature: str
    """The request's signature: the seed of an aws-chunked signature chain."""
    signing_key: bytes = field(repr=False)
    payload_hash: str
    """The payload claim: a sha256 hex digest, or one of the ``*PAYLOAD*`` constants."""
    presigned: bool
    signed_headers: tuple[str, ...]

    @property
    def content_sha256(self) -> str | None:
        """The body's claimed sha256 (lower-case hex), or None when the claim is not a digest."""
        return None if self.payload_hash in _PAYLOAD_CLAIMS else self.payload_hash.lower()

    @property
    def chunk_signed(self) -> bool:
        """True when the body is aws-chunked with a signature on every chunk."""
        return self.payload_hash in (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER)

    @property
    def has_trailer(self) -> bool:
        """True when the aws-chunked body ends with trailing headers (checksums)."""
        return self.payload_hash in (STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_TRAILER)


@dataclass(frozen=True, slots=True)
class _Claim:
    """Everything a request says about its own signature, header or presigned alike."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    timestamp: float
    payload_hash: str
    presigned: bool
    expires: int = 0


# -- canonical request -----------------------------------------------------------


def _encode(data: bytes) -> str:
    if _UNRESERVED.fullmatch(data):
        return data.decode("ascii")  # nothing to escape (most names and values)
    return quote(data, safe=_AWS_SAFE)


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a raw request path, per segment, never normalised."""
    path = raw_path.partition("?")[0] or "/"
    if _UNRESERVED_PATH.fullmatch(path):
        return path  # no escapes to decode and nothing to encode: already canonical
    return "/".join(_encode(unquote_to_bytes(wire_bytes(seg))) for seg in path.split("/"))


def decode_query(raw_query: str) -> list[tuple[bytes, bytes]]:
    """The query's (name, value) pairs, percent-decoded to the bytes the client meant."""
    return [(decode_query_component(n), decode_query_component(v)) for n, v in split_query(raw_query)]


def canonical_query(raw_query: str | list[tuple[bytes, bytes]], *, presigned: bool = False) -> str:
    """The canonical query string (of a raw query or its :func:`decode_query` pairs);
    ``presigned`` leaves out ``X-Amz-Signature``."""
    decoded = decode_query(raw_query) if isinstance(raw_query, str) else raw_query
    pairs = [
        (_encode(name), _encode(value))
        for name, value in decoded
        if not (presigned and name == b"X-Amz-Signature")
    ]
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _trim(value: str) -> str:
    # "Trimall": outer whitespace gone, inner runs as one space. str.split()
    # is what botocore uses, so the two agree even on tabs and odd spaces.
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, list[str]], signed_headers: Sequence[str]) -> str:
    """``name:value`` lines (each ending in a newline) for the signed headers, sorted."""
    lines = []
    for name in sorted(signed_headers):
        values = headers.get(name, [])
        lines.append(f"{name}:{','.join(_trim(v) for v in values)}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str | list[tuple[bytes, bytes]],
    headers: HeadersLike | dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    presigned: bool = False,
) -> str:
    """The SigV4 canonical request of an S3 request, from its raw parts
    (the query raw, or as :func:`decode_query` pairs)."""
    hmap = headers if _is_header_map(headers) else header_map(cast(HeadersLike, headers))
    return "\n".join(
        (
            method,
            canonical_uri(raw_path),
            canonical_query(raw_query, presigned=presigned),
            canonical_headers(hmap, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def _is_header_map(headers: object) -> TypeGuard[dict[str, list[str]]]:
    # header_map() output is a plain dict of lists; anything else gets normalised.
    return isinstance(headers, dict) and all(isinstance(v, list) for v in headers.values())


# aiohttp hands over non-UTF-8 header bytes as surrogate escapes: hash the
# bytes the client sent rather than fail.
_utf8 = wire_bytes


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The SigV4 string to sign over a canonical request."""
    digest = hashlib.sha256(_utf8(canonical)).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, _utf8(msg), "sha256")


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The derived signing key: an HMAC chain over date, region, service, ``aws4_request``."""
    k = _hmac(_utf8("AWS4" + secret), date)
    return _hmac(_hmac(_hmac(k, region), service), "aws4_request")


def sign(key: bytes, text: str) -> str:
    """Hex HMAC-SHA256 of a string to sign."""
    return hmac.digest(key, _utf8(text), "sha256").hex()


class SigningKeyCache:
    """A small bounded memo of derived signing keys.

    Deriving a key costs four HMACs per request; it only changes per
    (secret, day, region), so a handful of entries serve every request of a day.
    Oldest entries go first when full.
    """

    def __init__(self, maxsize: int = 128) -> None:
        self._maxsize = max(1, maxsize)
        self._keys: dict[tuple[str, str, str, str], bytes] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, secret: str, date: str, region: str, service: str = "s3") -> bytes:
        """The signing key for this scope, derived once."""
        k = (secret, date, region, service)
        key = self._keys.get(k)
        if key is None:
            key = signing_key(secret, date, region, service)
            if len(self._keys) >= self._maxsize:
                del self._keys[next(iter(self._keys))]
            self._keys[k] = key
        return key


_DEFAULT_CACHE = SigningKeyCache()


# -- parsing the claims ----------------------------------------------------------


@functools.lru_cache(maxsize=256)  # a request's date repeats in its credential and in others of that second
def _parse_amz_date(value: str) -> float | None:
    m = _AMZ_DATE.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return dt.timestamp()


def _amz_date_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


@functools.lru_cache(maxsize=256)  # one per key and day: parsed once, not per request
def _parse_credential(value: str, err: Callable[[str], S3Error]) -> Credential:
    parts = value.split("/")
    if len(parts) != 5 or not _ACCESS_KEY.fullmatch(parts[0]):
        raise err(f"the Credential is mal-formed; {_CREDENTIAL_SHAPE}")
    akid, date, region, service, terminal = parts
    if _DATE8.fullmatch(date) is None or _parse_amz_date(date + "T000000Z") is None:
        raise err(
            f'incorrect date format "{date[:16]}". '
            'This date in the credential must be in the format "yyyyMMdd".'
        )
    if _REGION.fullmatch(region) is None:
        raise err(f"the Credential is mal-formed; {_CREDENTIAL_SHAPE}")
    if service != "s3":
        raise err(f'incorrect service "{service[:32]}". This endpoint belongs to "s3".')
    if terminal != "aws4_request":
        raise err(f'incorrect terminal "{terminal[:32]}". This endpoint uses "aws4_request".')
    return Credential(akid, date, region, service)


@functools.lru_cache(maxsize=256)  # a client signs the same header list on every request
def _parse_signed_headers(value: str, err: Callable[[str], S3Error]) -> tuple[str, ...]:
    names = value.lower().split(";")
    if len(names) > _MAX_SIGNED_HEADERS or len(set(names)) != len(names):
        raise err("the SignedHeaders are mal-formed")
    if not all(_TOKEN.fullmatch(n) for n in names):
        raise err("the SignedHeaders are mal-formed")
    return tuple(names)


def _parse_signature(value: str, err: Callable[[str], S3Error]) -> str:
    if _SHA256_HEX.fullmatch(value) is None:
        raise err("the Signature is mal-formed")
    return value.lower()


def _header_error(detail: str) -> S3Error:
    return AuthorizationHeaderMalformed(f"The authorization header is malformed; {detail}")


def _query_error(detail: str) -> S3Error:
    return AuthorizationQueryParametersError(
        f"Error parsing the X-Amz-Credential parameter; {detail}"
    )


def parse_authorization(header: str) -> AuthHeader:
    """Parse an ``Authorization`` header of the SigV4 form.

    Tolerates what real clients send (``, `` or ``,`` between the parts, runs
    of spaces or tabs); anything else raises AuthorizationHeaderMalformed. A
    SigV2 (``AWS AKID:sig``) or SigV4a header raises InvalidRequest, as S3's
    SigV4-only regions do.
    """
    if len(header) > _MAX_AUTH_HEADER:
        raise _header_error("the header is too long")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm in ("AWS", "AWS4-ECDSA-P256-SHA256"):
        raise InvalidRequest(_UNSUPPORTED_AUTH)
    if algorithm != ALGORITHM:
        raise _header_error(f'the authorization mechanism is unsupported; expecting "{ALGORITHM}".')
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        name = name.strip()
        if not eq or name not in ("Credential", "SignedHeaders", "Signature") or name in fields:
            raise _header_error(f'the authorization component "{part.strip()[:64]}" is malformed.')
        fields[name] = value.strip()
    if len(fields) != 3:
        raise _header_error("it must contain Credential, SignedHeaders and Signature.")
    return AuthHeader(
        credential=_parse_credential(fields["Credential"], _header_error),
        signed_headers=_parse_signed_headers(fields["SignedHeaders"], _header_error),
        signature=_parse_signature(fields["Signature"], _header_error),
    )


def _query_params(decoded: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in decoded:
        out.setdefault(name.decode("utf-8", "replace"), []).append(value.decode("utf-8", "replace"))
    return out


_QUERY_AUTH = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "Signature"})
AuthKind = Literal["header", "presigned", "none"]


def _kind(headers: Mapping[str, list[str]], query: Mapping[str, list[str]]) -> AuthKind:
    if "authorization" in headers:
        return "header"
    return "presigned" if query.keys() & _QUERY_AUTH else "none"


def auth_kind(req: SignedRequest) -> AuthKind:
    """How a request claims to be authenticated, without checking anything.

    Lets the gateway decide about anonymous (``"none"``) requests itself.
    """
    raw_query = req.raw_query or req.raw_path.partition("?")[2]
    return _kind(header_map(req.headers), _query_params(decode_query(raw_query)))


def _payload_claim(values: Sequence[str]) -> str:
    payload = values[-1].strip()
    if len(values) != 1 or not (payload in _PAYLOAD_CLAIMS or _SHA256_HEX.fullmatch(payload)):
        raise InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
            "or a valid sha256 value.",
            extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": ",".join(values)[:128]},
        )
    return payload


def _claim_from_header(headers: Mapping[str, list[str]]) -> _Claim:
    values = headers["authorization"]
    if len(values) != 1:
        raise _header_error("more than one Authorization header was given.")
    auth = parse_authorization(values[0])
    amz_date, timestamp = _header_timestamp(headers)
    sha = headers.get("x-amz-content-sha256")
    if sha is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    payload = _payload_claim(sha)
    return _Claim(
        auth.credential, auth.signed_headers, auth.signature, amz_date, timestamp, payload, False
    )


_NO_DATE = "AWS authentication requires a valid Date or x-amz-date header"


def _header_timestamp(headers: Mapping[str, list[str]]) -> tuple[str, float]:
    """The signed timestamp: ``x-amz-date``, else ``Date`` rewritten in ISO basic form."""
    amz = headers.get("x-amz-date")
    if amz is not None:
        ts = _parse_amz_date(amz[0].strip()) if len(amz) == 1 else None
        if ts is None:
            raise AccessDenied(_NO_DATE)
        return amz[0].strip(), ts
    date = headers.get("date")
    ts = parse_http_date(date[0]) if date is not None and len(date) == 1 else None
    if ts is None:
        raise AccessDenied(_NO_DATE)
    return _amz_date_of(ts), ts


def _claim_from_query(q: Mapping[str, list[str]], headers: Mapping[str, list[str]]) -> _Claim:
    if "Signature" in q and "X-Amz-Signature" not in q:
        raise InvalidRequest(_UNSUPPORTED_AUTH)  # SigV2 presigned URL

    def err(detail: str) -> S3Error:
        return AuthorizationQueryParametersError(detail)

    names = (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    )
    if any(len(q.get(n, ())) != 1 for n in names):
        raise err(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    algorithm, credential, amz_date, expires, signed, signature = (q[n][0] for n in names)
    if algorithm != ALGORITHM:
        raise err(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    timestamp = _parse_amz_date(amz_date)
    if timestamp is None:
        raise err("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 9:
        raise err("X-Amz-Expires should be a number")
    if not 1 <= int(expires) <= MAX_EXPIRES_SECONDS:
        raise err("X-Amz-Expires must be less than a week (in seconds) that is 604800")
    signed_headers = _parse_signed_headers(signed, err)
    # A presigned URL's payload is unsigned unless the signer chose to sign a
    # content hash: as a header it signed (botocore) or as a parameter (MinIO).
    payload = UNSIGNED_PAYLOAD
    sha = headers.get("x-amz-content-sha256")
    if sha is not None and "x-amz-content-sha256" in signed_headers:
        payload = _payload_claim(sha)
    elif "X-Amz-Content-Sha256" in q:
        payload = _payload_claim(q["X-Amz-Content-Sha256"])
    return _Claim(
        _parse_credential(credential, _query_error),
        signed_headers,
        _parse_signature(signature, err),
        amz_date,
        timestamp,
        payload,
        True,
        int(expires),
    )


# -- verification ----------------------------------------------------------------


def _check_scope(claim: _Claim, region: str | None) -> None:
    cred = claim.credential
    err = _query_error if claim.presigned else _header_error
    if cred.date != claim.amz_date[:8]:
        raise err("Invalid credential date. Date is not the same as X-Amz-Date.")
    if region is not None and cred.region != region:
        e = err(f"the region '{cred.region}' is wrong; expecting '{region}'")
        e.extra["Region"] = region
        raise e


def _check_time(claim: _Claim, now: float, max_skew: float) -> None:
    if claim.presigned:
        if claim.timestamp - now > max_skew:
            raise AccessDenied("Request is not valid yet")
        if now > claim.timestamp + claim.expires:
            raise AccessDenied(
                "Request has expired",
                extra={
                    "X-Amz-Expires": str(claim.expires),
                    "Expires": iso8601(claim.timestamp + claim.expires),
                    "ServerTime": iso8601(now),
                },
            )
    elif abs(now - claim.timestamp) > max_skew:
        raise RequestTimeTooSkewed(
            extra={
                "RequestTime": claim.amz_date,
                "ServerTime": iso8601(now),
                "MaxAllowedSkewMilliseconds": str(int(max_skew * 1000)),
            }
        )


def _check_signed_headers(claim: _Claim, headers: Mapping[str, list[str]]) -> None:
    if "host" not in claim.signed_headers:
        detail = "the SignedHeaders must include host"
        raise _query_error(detail) if claim.presigned else _header_error(detail)
    # Every x-amz-* header changes what S3 does, so S3 insists they are signed.
    # A presigned URL's content hash header is exempt: it is not trusted anyway.
    exempt = ("x-amz-content-sha256",) if claim.presigned else ()
    unsigned = sorted(
        n for n in headers
        if n.startswith("x-amz-") and n not in claim.signed_headers and n not in exempt
    )
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)[:1024]},
        )


def verify_request(
    req: SignedRequest,
    lookup_secret: Callable[[str], str | None],
    now: float,
    *,
    region: str | None = None,
    max_skew: float = MAX_SKEW_SECONDS,
    key_cache: SigningKeyCache | None = None,
) -> AuthResult:
    """Verify a request's SigV4 signature (Authorization header or presigned URL).

    ``lookup_secret`` maps an access key to its secret (None: unknown key).
    ``now`` is the server clock in epoch seconds. ``region``, when given, is
    the only region accepted in the credential scope; by default any is, as
    S3-compatible servers commonly do. Raises the S3Error S3 would send;
    returns what the I/O layer needs to check the body afterwards.
    """
    headers = header_map(req.headers)
    raw_path, _, attached = req.raw_path.partition("?")
    raw_query = req.raw_query or attached
    decoded = decode_query(raw_query)  # once: both the claims and the canonical query need it
    query = _query_params(decoded)
    kind = _kind(headers, query)
    if kind == "none":
        raise AccessDenied("Anonymous access is not allowed: sign requests with AWS4-HMAC-SHA256")
    if kind == "header":
        if query.keys() & _QUERY_AUTH:
            raise InvalidArgument(_ONE_AUTH_ONLY, extra={"ArgumentName": "Authorization"})
        claim = _claim_from_header(headers)
    else:
        claim = _claim_from_query(query, headers)
    _check_scope(claim, region)
    cred = claim.credential
    secret = lookup_secret(cred.access_key)
    if secret is None:
        raise InvalidAccessKeyId(extra={"AWSAccessKeyId": cred.access_key})
    _check_time(claim, now, max_skew)
    _check_signed_headers(claim, headers)
    canonical = canonical_request(
        req.method,
        raw_path,
        decoded,
        headers,
        claim.signed_headers,
        claim.payload_hash,
        presigned=claim.presigned,
    )
    to_sign = string_to_sign(claim.amz_date, cred.scope, canonical)
    key = (key_cache or _DEFAULT_CACHE).get(secret, cred.date, cred.region, cred.service)
    if not hmac.compare_digest(sign(key, to_sign), claim.signature):
        raise SignatureDoesNotMatch(
            extra={
                "AWSAccessKeyId": cred.access_key,
                "StringToSign": to_sign,
                "SignatureProvided": claim.signature,
                "CanonicalRequest": canonical,
            }
        )
    return AuthResult(
        access_key=cred.access_key,
        region=cred.region,
        service=cred.service,
        amz_date=claim.amz_date,
        scope=cred.scope,
        signature=claim.signature,
        signing_key=key,
        payload_hash=claim.payload_hash,
        presigned=claim.presigned,
        signed_headers=claim.signed_headers,
    )


# -- aws-chunked bodies ----------------------------------------------------------


def chunk_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, chunk_sha256: str
) -> str:
    """String to sign of one aws-chunked chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).

    Each chunk's signature covers the previous one (the seed is the request
    signature), so chunks cannot be dropped, reordered or spliced.
    """
    # The empty-string hash stands for the chunk's (absent) extension headers.
    parts = ("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous_signature, EMPTY_SHA256)
    return "\n".join((*parts, chunk_sha256))


def trailer_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, trailer_sha256: str
) -> str:
    """String to sign of the trailing headers (``...-PAYLOAD-TRAILER``).

    ``trailer_sha256`` hashes the trailer lines as sent, each ``name:value\\n``.
    """
    parts = ("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous_signature, trailer_sha256)
    return "\n".join(parts)


def verify_chunk_signature(
    auth: AuthResult, previous_signature: str, chunk_sha256: str, signature: str
) -> str:
    """Check one chunk's signature; returns it, the ``previous_signature`` of the next chunk.

    ``chunk_sha256`` is the hex sha256 of the chunk's data (of ``b""`` for the
    final zero-length chunk), so the I/O layer can hash while it streams.
    """
    to_sign = chunk_string_to_sign(auth.amz_date, auth.scope, previous_signature, chunk_sha256)
    return _check_chain(auth, to_sign, signature)


def verify_trailer_signature(
    auth: AuthResult, previous_signature: str, trailer_sha256: str, signature: str
) -> None:
    """Check ``x-amz-trailer-signature`` against the last chunk's signature."""
    to_sign = trailer_string_to_sign(auth.amz_date, auth.scope, previous_signature, trailer_sha256)
    _check_chain(auth, to_sign, signature)


def _check_chain(auth: AuthResult, to_sign: str, signature: str) -> str:
    expected = sign(auth.signing_key, to_sign)
    if not hmac.compare_digest(expected, signature.lower()):
        raise SignatureDoesNotMatch(
            extra={"AWSAccessKeyId": auth.access_key, "SignatureProvided": signature[:64]}
        )
    return expected


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """One aws-chunked chunk header line: ``hex-size[;chunk-signature=sig]``."""

    size: int
    signature: str | None


_CHUNK_LINE = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-fA-F]{64}))?", re.ASCII)


def parse_chunk_header(line: bytes, *, max_size: int) -> ChunkHeader:
    """Parse a chunk header (without its CRLF); sizes above ``max_size`` are refused.

    Raises IncompleteBody for anything malformed, since the body cannot be framed.
    """
    m = _CHUNK_LINE.fullmatch(line.strip(b" "))
    if m is None:
        raise IncompleteBody("Malformed aws-chunked chunk header")
    size = int(m.group(1), 16)
    if size > max_size:
        raise IncompleteBody("aws-chunked chunk is larger than allowed")
    sig = m.group(2)
    return ChunkHeader(size, sig.decode("ascii").lower() if sig is not None else None)
