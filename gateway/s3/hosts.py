"""Where a request points: absolute-form targets and virtual-host addressing. Pure.

``bucket.<base domain>`` in the Host header names the bucket (virtual-host
style); any other host (an IP address, the base domain itself, a name the
gateway does not serve) leaves the bucket to the path (path style).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import InvalidArgument, InvalidURI, KeyTooLongError
from .requests import MAX_KEY_BYTES, decode_path_part, parse_path, validate_bucket_name, validate_key

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_HOST = re.compile(r"([a-z0-9.-]{1,253}|\[[0-9a-f:.]{2,45}\])(?::([0-9]{1,5}))?", re.ASCII)
_ABSOLUTE = re.compile(r"https?://([^/?#]{1,300})([/?].*)?", re.ASCII | re.DOTALL | re.IGNORECASE)
_MAX_RAW_KEY = 3 * MAX_KEY_BYTES


def parse_domain(text: str) -> str:
    """A base domain as configured (``s3.example.com``, ``localhost``), lower-cased; ValueError if not one."""
    domain = text.strip().lower().rstrip(".")
    if len(domain) > 253 or _DOMAIN.fullmatch(domain) is None:
        raise ValueError(f"{text!r} is not a domain name (expected e.g. s3.example.com)")
    return domain


def split_target(raw_target: str) -> tuple[str | None, str]:
    """``(authority, origin-form target)`` of a request target.

    Origin form (``/b/k?x``) has no authority. Absolute form
    (``http://host/b/k?x``, sent to proxies; RFC 9112 §3.2.2 has servers accept it)
    gives its authority, which then takes the place of the Host header.
    """
    if raw_target.startswith("/"):
        return None, raw_target
    m = _ABSOLUTE.fullmatch(raw_target)
    if m is None:
        raise InvalidURI()
    rest = m.group(2) or "/"
    return m.group(1), rest if rest.startswith("/") else "/" + rest


def host_bucket(host: str | None, domains: Sequence[str]) -> str | None:
    """The bucket a Host header names under one of ``domains``; None for path style.

    The header is parsed strictly: a host name or bracketed IPv6 literal with
    an optional port; anything else is InvalidArgument.
    """
    if not host or not domains:
        return None
    m = _HOST.fullmatch(host.lower())
    if m is None or (m.group(2) is not None and not 0 < int(m.group(2)) < 65536):
        extra = {"ArgumentName": "Host", "ArgumentValue": host[:255]}
        raise InvalidArgument("Invalid Host header", extra=extra)
    name = m.group(1).rstrip(".")
    for domain in sorted(domains, key=len, reverse=True):
        if name == domain:
            return None
        if name.endswith("." + domain):
            bucket = name[: -len(domain) - 1]
            validate_bucket_name(bucket)
            return bucket
    return None


def parse_target(raw_path: str, bucket: str | None) -> tuple[str | None, str | None]:
    """``(bucket, key)``: from the path alone (path style), or under the Host's ``bucket``."""
    if bucket is None:
        return parse_path(raw_path)
    path = raw_path.partition("?")[0]
    if not path.startswith("/"):
        raise InvalidURI()
    raw_key = path[1:]
    if not raw_key:
        return bucket, None
    if len(raw_key) > _MAX_RAW_KEY:
        raise KeyTooLongError()
    key = decode_path_part(raw_key)
    validate_key(key)
    return bucket, key
