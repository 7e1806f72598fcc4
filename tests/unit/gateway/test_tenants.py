"""Tenants file parsing and authorisation (pure)."""

from __future__ import annotations

import pytest
from pipecache.gateway.tenants import (
    ANY_BUCKET,
    Grant,
    ListScope,
    ScopePart,
    TenantsError,
    decode_token,
    encode_token,
    normalise,
    parse_grant,
    parse_tenants,
)

FILE = """\
public_read: [open-data]
tenants:
  vision:
    keys:
      - {access_key: VISION1, secret_key: s1}
      - access_key: VISION2
        secret_key: s2
    read: [datasets/imagenet, datasets/imagenet/train, models]
    write: [models/vision/]
    cache_quota: 200GiB
  nlp:
    keys: [{access_key: NLP, secret_key: s3}]
    read: [datasets/text, datasets/team-a]
  admin:
    keys: [{access_key: ADMIN, secret_key: s4}]
    read: ["*"]
    write: ["*"]
"""


@pytest.fixture
def tenants():  # type: ignore[no-untyped-def]
    return parse_tenants(FILE, "t.yaml")


def test_keys_map_to_their_tenant(tenants) -> None:  # type: ignore[no-untyped-def]
    assert tenants.secret("VISION1") == "s1"
    assert tenants.secret("VISION2") == "s2"
    assert tenants.secret("nobody") is None
    assert tenants.tenant("VISION2").name == "vision"
    assert tenants.tenant("NLP").name == "nlp"
    assert tenants.tenant("VISION1").cache_quota == 200 * 1024**3
    assert tenants.tenant("NLP").cache_quota is None
    assert tenants.tenant("NLP").charged and not tenants.anonymous.charged
    assert tenants.public_read == {"open-data"}


def test_overlapping_grants_collapse(tenants) -> None:  # type: ignore[no-untyped-def]
    vision = tenants.tenant("VISION1")
    assert Grant("datasets", "imagenet/train/") not in vision.read
    assert Grant("datasets", "imagenet/") in vision.read
    assert vision.can_read("datasets", "imagenet/train/x.jpg")
    assert normalise([Grant("b", "a/b/"), Grant("b"), Grant("c", "x/")]) == (Grant("b"), Grant("c", "x/"))
    assert parse_grant("bkt/") == parse_grant("bkt") == Grant("bkt")
    assert normalise([Grant(ANY_BUCKET), Grant("b", "a/")]) == (Grant(ANY_BUCKET),)


def test_a_string_prefix_is_not_a_path_prefix(tenants) -> None:  # type: ignore[no-untyped-def]
    nlp = tenants.tenant("NLP")
    assert nlp.can_read("datasets", "team-a/x")
    assert not nlp.can_read("datasets", "team-ab/x")
    assert not nlp.can_read("datasets", "team-a")  # the grant is the folder, not a key of that name
    assert not nlp.can_read("datasets", "imagenet/1.jpg")
    assert parse_grant("bkt/team-a") == parse_grant("bkt/team-a/") == Grant("bkt", "team-a/")


def test_reads_writes_and_buckets(tenants) -> None:  # type: ignore[no-untyped-def]
    vision, admin = tenants.tenant("VISION1"), tenants.tenant("ADMIN")
    assert vision.can_write("models", "vision/ckpt")
    assert not vision.can_write("models", "other/ckpt")
    assert not vision.can_write("datasets", "imagenet/x")  # read grants do not allow writes
    assert vision.can_read("models", "other/ckpt")
    assert not vision.can_write_bucket("models")
    assert admin.can_write_bucket("anything") and admin.can_read("anything", "k")
    assert vision.knows_bucket("datasets") and not vision.knows_bucket("secret")
    assert [b for b in ("datasets", "models", "open-data", "x") if vision.lists_bucket(b)] == [
        "datasets",
        "models",
    ]
    assert admin.lists_bucket("x")


def test_public_read_is_for_everyone_read_only(tenants) -> None:  # type: ignore[no-untyped-def]
    anon = tenants.anonymous
    assert anon.can_read("open-data", "any/key")
    assert not anon.can_write("open-data", "any/key")
    assert not anon.can_read("datasets", "text/a")
    assert tenants.tenant("NLP").can_read("open-data", "k")
    assert not tenants.tenant("NLP").lists_bucket("open-data")


def test_single_key_pair_has_full_access() -> None:
    from pipecache.gateway.tenants import Tenants

    t = Tenants.single("AK", "SK")
    assert t.secret("AK") == "SK" and t.secret("other") is None
    assert t.tenant("AK").can_write_bucket("b") and t.tenant("AK").lists_bucket("b")


def test_list_scope(tenants) -> None:  # type: ignore[no-untyped-def]
    nlp = tenants.tenant("NLP")
    assert nlp.list_scope("models", "", "/") is None
    assert nlp.list_scope("datasets", "text/", "/") == ListScope(True)
    assert nlp.list_scope("datasets", "text/sub/x", "") == ListScope(True)
    assert nlp.list_scope("datasets", "", "/") == ListScope(
        False, (ScopePart("team-a/", "team-a/"), ScopePart("text/", "text/"))
    )
    assert nlp.list_scope("datasets", "te", "") == ListScope(
        False, (ScopePart("team-a/", None), ScopePart("text/", None))
    )
    # "team-a" (no slash) as a prefix must not reach "team-ab/": only the granted folder is listed.
    assert nlp.list_scope("datasets", "team-a", "/") == ListScope(False, (ScopePart("team-a/", "team-a/"),))
    assert nlp.list_scope("datasets", "zzz", "/") == ListScope(False, ())
    assert nlp.list_scope("datasets", "", "-") == ListScope(
        False, (ScopePart("team-a/", "team-"), ScopePart("text/", None))
    )
    with pytest.raises(ValueError, match="spans"):
        nlp.list_scope("datasets", "", "/x")


def test_tokens_round_trip() -> None:
    for cursor in ("a/b", "ключ/ü", "team-a/"):
        assert decode_token(encode_token(cursor)) == cursor
    for bad in ("", "abc", "pcs1.%%%", "pcs1.//8="):
        with pytest.raises(ValueError):
            decode_token(bad)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "tenants: {a: {keys: [{access_key: A, secret_key: B}], read: [Bad_Bucket]}}",
            "line 1: tenants.a.read[0]",
        ),
        ("tenants:\n  a:\n    keys: []\n", "line 3: tenants.a.keys"),
        ("tenants:\n  a:\n    read: [b]\n", "line 3: tenants.a: missing 'keys'"),
        ("tenants:\n  a:\n    keys: [{access_key: A}]\n", "line 3: tenants.a.keys[0]: missing 'secret_key'"),
        (
            "tenants:\n  a:\n    keys: [{access_key: A, secret_key: B}]\n    raed: [b]\n",
            "line 4: tenants.a.raed",
        ),
        (
            "tenants:\n  a:\n    keys: [{access_key: A, secret_key: B}]\n"
            "  b:\n    keys: [{access_key: A, secret_key: C}]\n",
            "line 5: tenants.b.keys: access key 'A' is given twice",
        ),
        ("tenants:\n  a:\n    keys: [{access_key: A, secret_key: B}]\n    cache_quota: lots\n", "line 4"),
        (
            "tenants:\n  a b:\n    keys: [{access_key: A, secret_key: B}]\n",
            "line 3: tenants.a b: name: 'a b' is not a tenant name",
        ),
        ("public_read: [bkt/prefix]\ntenants: {}\n", "line 1: public_read[0]"),
        ("tenant: {}\n", "line 1: top level.tenant: unknown field"),
        ("tenants: [a, b]\n", "line 1: tenants: expected a mapping"),
        ("tenants:\n  a: {keys: [{access_key: A, secret_key: B}]\n", "line 3: not valid YAML"),
        ("", "empty"),
        ("tenants:\n  a:\n    keys: [{access_key: A, secret_key: B}]\n    read: [{x: 1}]\n", "line 4"),
    ],
)
def test_malformed_files_name_the_line_and_field(text: str, where: str) -> None:
    with pytest.raises(TenantsError) as ei:
        parse_tenants(text, "t.yaml")
    assert str(ei.value).startswith("t.yaml")
    assert where in str(ei.value)


def test_common_prefixes_a_tenant_may_see(tenants) -> None:  # type: ignore[no-untyped-def]
    nlp = tenants.tenant("NLP")
    assert nlp.may_see_prefix("datasets", "team-a/")  # its folder
    assert nlp.may_see_prefix("datasets", "team-a/sub/")  # inside it
    assert nlp.may_see_prefix("datasets", "te")  # leads to it
    assert not nlp.may_see_prefix("datasets", "team-ab/")
    assert not nlp.may_see_prefix("datasets", "team-a/", write=True)
    assert not nlp.may_see_prefix("models", "")
