"""Tenants: who may read, write and list what through the gateway. Pure (no I/O).

A tenants file is YAML::

    public_read: [open-data]          # buckets anyone may GET, HEAD and list, even unsigned
    tenants:
      vision:
        keys:
          - {access_key: VISIONKEY, secret_key: vision-secret}
        read: [datasets/imagenet, models]   # a bucket, or bucket/prefix (a folder)
        write: [models/vision]
        cache_quota: 200GiB                 # bytes of cache over the whole cluster

A grant ``bucket/a/b`` is a *folder*: it covers ``a/b/x`` but not ``a/bc``.
``*`` grants every bucket. Write grants do not imply read grants.

Tenant names are 1..64 characters of A-Z a-z 0-9 . _ - (they travel to the
workers, which charge cached blocks to them).

Cache quotas. Every block a tenant's GetObject brings into the cache is
charged to that tenant (the first toucher; a block already cached is free for
the next reader, whoever it is). The gateway registers ``cache_quota`` with
the master, which gives each worker a share in proportion to its capacity;
a tenant over its share on a worker evicts its own blocks there, never
another tenant's. Anonymous reads, the single key pair without a tenants
file, and preloads are charged to nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from ..client import listing
from ..client.protocol import check_tenant
from ..tiering.budget import parse_size
from ..tiering.errors import BadRequest, InterfaceError
from .s3.errors import S3Error
from .s3.requests import validate_bucket_name

ANY_BUCKET = "*"
_TOKEN_MARK = "pcs1."


class TenantsError(ValueError):
    """A tenants file that cannot be used; the message names the line and the field."""


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """All keys of ``bucket`` (``prefix`` "") or those under the folder ``prefix`` (ends in "/")."""

    bucket: str
    prefix: str = ""

    def contains(self, other: Grant) -> bool:
        return self.bucket in (other.bucket, ANY_BUCKET) and other.prefix.startswith(self.prefix)


def parse_grant(text: str) -> Grant:
    """``bucket``, ``bucket/prefix`` (trailing "/" optional) or ``*``; ValueError if invalid."""
    if text == ANY_BUCKET:
        return Grant(ANY_BUCKET)
    bucket, _, prefix = text.partition("/")
    try:
        validate_bucket_name(bucket)
    except S3Error:
        raise ValueError(f"{bucket!r} is not a valid bucket name") from None
    prefix = prefix.rstrip("/")
    return Grant(bucket, prefix + "/" if prefix else "")


def normalise(grants: Iterable[Grant]) -> tuple[Grant, ...]:
    """Sorted, without grants that another one already contains (overlaps collapse)."""
    unique = sorted(set(grants))
    return tuple(g for g in unique if not any(o != g and o.contains(g) for o in unique))


@dataclass(frozen=True, slots=True)
class ScopePart:
    """One granted folder under a listing's prefix.

    ``rollup``: with a delimiter inside the folder's name (relative to the listed
    prefix), every key under the folder folds into this one common prefix, shown
    if the folder holds anything. None: list the folder itself with the delimiter.
    """

    prefix: str
    rollup: str | None


@dataclass(frozen=True, slots=True)
class ListScope:
    """How to list a prefix for a tenant: straight through, or as the merge of its folders."""

    passthrough: bool
    parts: tuple[ScopePart, ...] = ()


def _rollup(prefix: str, folder: str, delimiter: str) -> str | None:
    rel = folder[len(prefix) :]
    if not delimiter:
        return None
    i = rel.find(delimiter)
    if i >= 0:
        return prefix + rel[: i + len(delimiter)]
    # A delimiter that starts inside the folder name and ends in the keys would
    # roll up differently per key: not supported (single characters never do).
    for n in range(1, len(delimiter)):
        if rel.endswith(delimiter[:n]):
            raise ValueError("a delimiter that spans the end of a granted prefix")
    return None


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant's rights (``read`` already includes the public-read buckets)."""

    name: str
    read: tuple[Grant, ...] = ()
    write: tuple[Grant, ...] = ()
    cache_quota: int | None = None
    """Bytes of cache this tenant may use over the whole cluster (None: no limit)."""
    own_buckets: frozenset[str] = frozenset()
    """Buckets named in its own grants (ListBuckets shows these; ``*`` shows all)."""
    charged: bool = False
    """Blocks its reads bring into the cache are charged to it (tenants of a tenants file)."""
    _reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)
    _writes: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked on every request: one dict lookup and one str.startswith over a tuple.
        object.__setattr__(self, "_reads", _index(self.read))
        object.__setattr__(self, "_writes", _index(self.write))

    def can_read(self, bucket: str, key: str) -> bool:
        return _covered(self._reads, bucket, key)

    def can_write(self, bucket: str, key: str) -> bool:
        return _covered(self._writes, bucket, key)

    def can_write_bucket(self, bucket: str) -> bool:
        """Create or delete the bucket itself: a grant of the whole bucket."""
        return any(g.bucket in (bucket, ANY_BUCKET) and not g.prefix for g in self.write)

    def knows_bucket(self, bucket: str) -> bool:
        """HeadBucket and GetBucketLocation: any grant in the bucket."""
        return any(g.bucket in (bucket, ANY_BUCKET) for g in self.read + self.write)

    def may_see_prefix(self, bucket: str, prefix: str, *, write: bool = False) -> bool:
        """Whether a common prefix leads to (or lies inside) a granted folder."""
        grants = self.write if write else self.read
        return any(
            g.bucket in (bucket, ANY_BUCKET) and (g.prefix.startswith(prefix) or prefix.startswith(g.prefix))
            for g in grants
        )

    def lists_bucket(self, bucket: str) -> bool:
        """Whether ListBuckets shows ``bucket`` to this tenant."""
        return ANY_BUCKET in self.own_buckets or bucket in self.own_buckets

    def list_scope(self, bucket: str, prefix: str, delimiter: str) -> ListScope | None:
        """What a listing of ``prefix`` may show; None: no read grant in this bucket at all.

        Raises ValueError for a delimiter this cannot honour (see ``_rollup``).
        """
        grants = [g for g in self.read if g.bucket in (bucket, ANY_BUCKET)]
        if not grants:
            return None
        if any(prefix.startswith(g.prefix) for g in grants):
            return ListScope(passthrough=True)
        inside = [g.prefix for g in grants if g.prefix.startswith(prefix)]
        return ListScope(False, tuple(ScopePart(f, _rollup(prefix, f, delimiter)) for f in sorted(inside)))


def _index(grants: Iterable[Grant]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for g in grants:
        out[g.bucket] = out.get(g.bucket, ()) + (g.prefix,)
    return out


def _covered(index: Mapping[str, tuple[str, ...]], bucket: str, key: str) -> bool:
    return key.startswith(index.get(bucket, ())) or key.startswith(index.get(ANY_BUCKET, ()))


FULL_ACCESS = Tenant("default", (Grant(ANY_BUCKET),), (Grant(ANY_BUCKET),), None, frozenset({ANY_BUCKET}))


@dataclass(frozen=True, slots=True)
class Tenants:
    """Every tenant, by access key, and the public-read buckets."""

    tenants: tuple[Tenant, ...]
    secrets: Mapping[str, tuple[str, Tenant]] = field(default_factory=dict)
    public_read: frozenset[str] = frozenset()
    anonymous: Tenant = Tenant("anonymous")
    """The principal of unsigned requests: public-read buckets only."""

    @classmethod
    def single(cls, access_key: str, secret_key: str) -> Tenants:
        """One key pair with access to everything (the gateway without a tenants file)."""
        return cls((FULL_ACCESS,), {access_key: (secret_key, FULL_ACCESS)})

    def secret(self, access_key: str) -> str | None:
        item = self.secrets.get(access_key)
        return None if item is None else item[0]

    def tenant(self, access_key: str) -> Tenant:
        return self.secrets[access_key][1]


# -- continuation tokens of scoped listings --------------------------------------


def encode_token(cursor: str) -> str:
    """An opaque V2 continuation token resuming after ``cursor`` (a key or common prefix)."""
    return _TOKEN_MARK + listing.encode_token(cursor)


def decode_token(token: str) -> str:
    """The cursor of :func:`encode_token`; ValueError if the token is not one."""
    if not token.startswith(_TOKEN_MARK):
        raise ValueError("not a continuation token of this gateway")
    try:
        return listing.decode_token(token[len(_TOKEN_MARK) :])
    except InterfaceError:
        raise ValueError("corrupt continuation token") from None


# -- the file ----------------------------------------------------------------------


class _Parser:
    """Walks the composed YAML nodes, so every error can name its line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, where: str, message: str) -> TenantsError:
        return TenantsError(f"{self.source}, line {node.start_mark.line + 1}: {where}: {message}")

    def mapping(self, node: yaml.Node, where: str, allowed: Sequence[str] | None) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, where, "expected a mapping")
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            name = self.string(k, where)
            if allowed is not None and name not in allowed:
                raise self.fail(k, f"{where}.{name}", f"unknown field (expected one of {', '.join(allowed)})")
            if name in out:
                raise self.fail(k, f"{where}.{name}", "given twice")
            out[name] = v
        return out

    def string(self, node: yaml.Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null" or node.value == "":
            raise self.fail(node, where, "expected a non-empty string")
        return str(node.value)

    def strings(self, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode):
            return [(self.string(node, where), node)]
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, where, "expected a list of strings")
        return [(self.string(n, f"{where}[{i}]"), n) for i, n in enumerate(node.value)]

    def grants(self, node: yaml.Node | None, where: str) -> list[Grant]:
        if node is None:
            return []
        out = []
        for i, (text, item) in enumerate(self.strings(node, where)):
            try:
                out.append(parse_grant(text))
            except ValueError as exc:
                raise self.fail(item, f"{where}[{i}]", str(exc)) from None
        return out


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader when PyYAML was built with it (keeps line marks, far faster)."""
_TOP = ("tenants", "public_read")
_TENANT = ("keys", "read", "write", "cache_quota")
_KEY = ("access_key", "secret_key")


def _public(p: _Parser, node: yaml.Node | None) -> list[str]:
    out = []
    for i, g in enumerate(p.grants(node, "public_read")):
        if g.prefix or g.bucket == ANY_BUCKET:
            assert node is not None  # a grant came from it
            raise p.fail(node, f"public_read[{i}]", "public-read takes whole buckets only")
        out.append(g.bucket)
    return out


def _quota(p: _Parser, node: yaml.Node | None, where: str) -> int | None:
    if node is None:
        return None
    try:
        return parse_size(p.string(node, where))
    except ValueError as exc:
        raise p.fail(node, where, str(exc)) from None


def _keys(p: _Parser, node: yaml.Node, where: str) -> list[tuple[str, str, yaml.Node]]:
    """``(access key, secret, node)`` of a tenant's ``keys`` list."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise p.fail(node, where, "expected a non-empty list of access_key/secret_key pairs")
    out = []
    for i, item in enumerate(node.value):
        kw = f"{where}[{i}]"
        pair = p.mapping(item, kw, _KEY)
        for f in _KEY:
            if f not in pair:
                raise p.fail(item, kw, f"missing '{f}'")
        access = p.string(pair["access_key"], f"{kw}.access_key")
        out.append((access, p.string(pair["secret_key"], f"{kw}.secret_key"), pair["access_key"]))
    return out


def parse_tenants(text: str, source: str = "tenants file") -> Tenants:
    """Parse a tenants file; TenantsError naming the line and field of the first problem."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise TenantsError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        raise TenantsError(f"{source}: empty (expected a mapping with 'tenants')")
    p = _Parser(source)
    top = p.mapping(root, "top level", _TOP)
    if "tenants" not in top:
        raise p.fail(root, "top level", "missing 'tenants'")
    public = [Grant(b) for b in _public(p, top.get("public_read"))]
    tenants: list[Tenant] = []
    secrets: dict[str, tuple[str, Tenant]] = {}
    for name, node in p.mapping(top["tenants"], "tenants", None).items():
        where = f"tenants.{name}"
        try:
            check_tenant(name, "name")
        except BadRequest as exc:
            raise p.fail(node, where, exc.message) from None
        spec = p.mapping(node, where, _TENANT)
        if "keys" not in spec:
            raise p.fail(node, where, "missing 'keys' (a list of access_key/secret_key pairs)")
        read = p.grants(spec.get("read"), f"{where}.read")
        write = p.grants(spec.get("write"), f"{where}.write")
        quota = _quota(p, spec.get("cache_quota"), f"{where}.cache_quota")
        own = frozenset(g.bucket for g in read + write)
        tenant = Tenant(name, normalise(read + public), normalise(write), quota, own, charged=True)
        for access, secret, knode in _keys(p, spec["keys"], f"{where}.keys"):
            if access in secrets:
                raise p.fail(knode, f"{where}.keys", f"access key {access!r} is given twice")
            secrets[access] = (secret, tenant)
        tenants.append(tenant)
    anonymous = Tenant("anonymous", normalise(public))
    return Tenants(tuple(tenants), secrets, frozenset(g.bucket for g in public), anonymous)
