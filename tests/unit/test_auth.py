"""chalicelib/auth.py: POS signatures, bearer tokens (HS256 and Cognito RS256), principals."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.auth import (
    NONCE_TTL_SECONDS,
    CachedSignInLinks,
    PosReplay,
    Principal,
    TokenVerifier,
    bearer_token,
    principal_from_claims,
    sign,
    spend_nonce,
    verify_pos_request,
)
from chalicelib.domain.stores import StoreKey
from chalicelib.errors import Forbidden, Unauthenticated

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SKEW = 300
PATH = "/v1/members"
BODY = b'{"phone":"+8613900001111","channel":"pos"}'

KEYS = {
    "key_a": StoreKey(key_id="key_a", store_id="store-001", secret="secret-a"),
    "key_b": StoreKey(key_id="key_b", store_id="store-002", secret="secret-b"),
    "key_old": StoreKey(key_id="key_old", store_id="store-001", secret="secret-old", active=False),
}


class FakeNonceGuard:
    """In-memory NonceGuard: a key can be claimed once; reads are recorded."""

    def __init__(self) -> None:
        self.claims: dict[str, tuple[str, int]] = {}
        self.reads: list[str] = []

    def claim(
        self, key: str, kind: str, ttl_seconds: int, info: dict[str, Any] | None = None
    ) -> bool:
        if key in self.claims:
            return False
        self.claims[key] = (kind, ttl_seconds)
        return True

    def claimed(self, key: str, kind: str) -> bool:
        self.reads.append(key)
        return key in self.claims


class FakeLinks:
    """SignInLinks over a dict (sign-in `sub` -> member id); records every look-up."""

    def __init__(self, links: dict[str, str] | None = None) -> None:
        self.links = dict(links or {})
        self.asked: list[str] = []

    def member_id_for(self, subject: str) -> str | None:
        self.asked.append(subject)
        return self.links.get(subject)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pos_headers(
    *,
    key_id: str = "key_a",
    store_id: str = "store-001",
    secret: str | None = None,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    timestamp: str | None = None,
    nonce: str = "nonce-1",
) -> dict[str, str]:
    """Lower-case names, as Chalice's case-insensitive headers hand them over."""
    ts = timestamp if timestamp is not None else rfc3339(NOW)
    key_secret = secret if secret is not None else KEYS[key_id].secret
    return {
        "x-store-id": store_id,
        "x-key-id": key_id,
        "x-timestamp": ts,
        "x-nonce": nonce,
        "x-signature": sign(key_secret, method, path, ts, nonce, body),
    }


def verify(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    method: str = "POST",
    path: str = PATH,
    nonces: FakeNonceGuard | None = None,
    now: datetime = NOW,
    replay: PosReplay = PosReplay.NONCE,
) -> Principal:
    return verify_pos_request(
        method=method,
        path=path,
        headers=headers,
        body=body,
        key_lookup=KEYS.get,
        nonces=nonces if nonces is not None else FakeNonceGuard(),
        now=now,
        max_skew_seconds=SKEW,
        replay=replay,
    )


def error_code(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return str(excinfo.value.code)


# ---- POS signatures ---------------------------------------------------------------------


def test_given_a_correctly_signed_request_when_verifying_then_the_store_principal_is_returned():
    nonces = FakeNonceGuard()
    principal = verify(pos_headers(), nonces=nonces)
    assert principal == Principal("store", "store:store-001", store_id="store-001")
    assert nonces.claims == {"NONCE#store-001#nonce-1": ("nonce", NONCE_TTL_SECONDS)}


def test_given_an_upper_case_hex_signature_when_verifying_then_it_is_accepted():
    headers = pos_headers()
    headers["x-signature"] = headers["x-signature"].upper()
    assert verify(headers).store_id == "store-001"


@pytest.mark.parametrize(
    "dropped", ["x-store-id", "x-key-id", "x-timestamp", "x-nonce", "x-signature"]
)
def test_given_a_missing_signature_header_when_verifying_then_signature_missing_names_it(dropped):
    headers = pos_headers()
    del headers[dropped]
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "SIGNATURE_MISSING"
    assert excinfo.value.details == {"headers": [dropped]}


def test_given_an_empty_signature_header_when_verifying_then_signature_missing():
    headers = pos_headers()
    headers["x-nonce"] = ""
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "SIGNATURE_MISSING"


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400])
def test_given_a_timestamp_outside_the_window_when_verifying_then_stale_timestamp(offset):
    headers = pos_headers(timestamp=rfc3339(NOW + timedelta(seconds=offset)))
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "STALE_TIMESTAMP"


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_given_a_timestamp_at_the_edge_of_the_window_when_verifying_then_it_is_accepted(offset):
    headers = pos_headers(timestamp=rfc3339(NOW + timedelta(seconds=offset)))
    assert verify(headers).kind == "store"


def test_given_a_timestamp_with_an_offset_when_verifying_then_it_is_compared_in_utc():
    # 20:00 in Shanghai is 12:00 UTC: exactly NOW.
    headers = pos_headers(timestamp="2026-03-01T20:00:00+08:00")
    assert verify(headers).kind == "store"


@pytest.mark.parametrize(
    "timestamp", ["2026-03-01T12:00:00", "yesterday", "1772366400", "2026-13-01T00:00:00Z"]
)
def test_given_a_timestamp_without_zone_or_not_rfc3339_when_verifying_then_invalid_timestamp(
    timestamp,
):
    headers = pos_headers(timestamp=timestamp)
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "INVALID_TIMESTAMP"


def test_given_a_nonce_longer_than_128_characters_when_verifying_then_invalid_nonce():
    with pytest.raises(Unauthenticated) as excinfo:
        verify(pos_headers(nonce="n" * 129))
    assert error_code(excinfo) == "INVALID_NONCE"


def test_given_a_signature_made_with_another_secret_when_verifying_then_invalid_signature():
    headers = pos_headers(secret="not-the-secret")
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "INVALID_SIGNATURE"


@pytest.mark.parametrize("signature", ["not-hex-at-all", "ab" * 16, "0" * 64])
def test_given_a_signature_that_is_not_a_sha256_hex_digest_when_verifying_then_rejected(signature):
    headers = pos_headers()
    headers["x-signature"] = signature
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "INVALID_SIGNATURE"


def test_given_a_non_ascii_signature_when_verifying_then_invalid_signature():
    headers = pos_headers()
    headers["x-signature"] = "é" * 64
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "INVALID_SIGNATURE"


def test_given_an_unknown_key_id_when_verifying_then_invalid_signature_and_no_nonce_is_used():
    nonces = FakeNonceGuard()
    headers = pos_headers(key_id="key_a")
    headers["x-key-id"] = "key_unknown"
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers, nonces=nonces)
    assert error_code(excinfo) == "INVALID_SIGNATURE"
    assert nonces.claims == {}


def test_given_a_revoked_key_when_verifying_a_valid_signature_then_key_revoked():
    with pytest.raises(Unauthenticated) as excinfo:
        verify(pos_headers(key_id="key_old"))
    assert error_code(excinfo) == "KEY_REVOKED"


def test_given_store_a_key_with_store_b_header_when_verifying_then_forbidden_store_mismatch():
    headers = pos_headers(key_id="key_a", store_id="store-002")
    with pytest.raises(Forbidden) as excinfo:
        verify(headers)
    assert error_code(excinfo) == "STORE_MISMATCH"


def test_given_a_body_changed_after_signing_when_verifying_then_invalid_signature():
    headers = pos_headers(body=BODY)
    tampered = BODY.replace(b"1111", b"2222")
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers, body=tampered)
    assert error_code(excinfo) == "INVALID_SIGNATURE"


@pytest.mark.parametrize(("method", "path"), [("PATCH", PATH), ("POST", "/v1/members/lookup")])
def test_given_a_signature_for_another_method_or_path_when_verifying_then_invalid_signature(
    method, path
):
    headers = pos_headers(method="POST", path=PATH)
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers, method=method, path=path)
    assert error_code(excinfo) == "INVALID_SIGNATURE"


def test_given_a_used_nonce_when_verifying_the_same_request_again_then_nonce_reused():
    nonces = FakeNonceGuard()
    headers = pos_headers(nonce="once")
    verify(headers, nonces=nonces)
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers, nonces=nonces)
    assert error_code(excinfo) == "NONCE_REUSED"


def test_given_a_recorded_answer_route_when_verifying_a_request_twice_then_both_pass_and_nothing_is_claimed():
    """The route's request record answers the replay; the nonce is only read."""
    nonces = FakeNonceGuard()
    headers = pos_headers(nonce="recorded")
    for _ in range(2):
        principal = verify(headers, nonces=nonces, replay=PosReplay.RECORDED_ANSWER)
        assert principal.store_id == "store-001"
    assert nonces.claims == {}
    assert nonces.reads == ["NONCE#store-001#recorded"] * 2


def test_given_a_failed_request_spent_its_nonce_when_it_is_replayed_on_a_recorded_answer_route_then_nonce_reused():
    nonces = FakeNonceGuard()
    headers = pos_headers(nonce="failed-once")
    verify(headers, nonces=nonces, replay=PosReplay.RECORDED_ANSWER)
    spend_nonce(headers, nonces)
    assert nonces.claims == {"NONCE#store-001#failed-once": ("nonce", NONCE_TTL_SECONDS)}
    with pytest.raises(Unauthenticated) as excinfo:
        verify(headers, nonces=nonces, replay=PosReplay.RECORDED_ANSWER)
    assert error_code(excinfo) == "NONCE_REUSED"


def test_given_a_recorded_answer_route_when_the_body_is_changed_then_invalid_signature_before_any_read():
    nonces = FakeNonceGuard()
    headers = pos_headers(body=BODY)
    with pytest.raises(Unauthenticated) as excinfo:
        verify(
            headers,
            body=BODY.replace(b"1111", b"2222"),
            nonces=nonces,
            replay=PosReplay.RECORDED_ANSWER,
        )
    assert error_code(excinfo) == "INVALID_SIGNATURE"
    assert nonces.reads == []


def test_given_the_same_nonce_from_two_stores_when_verifying_then_both_are_accepted():
    nonces = FakeNonceGuard()
    verify(pos_headers(key_id="key_a", store_id="store-001", nonce="same"), nonces=nonces)
    principal = verify(
        pos_headers(key_id="key_b", store_id="store-002", nonce="same"), nonces=nonces
    )
    assert principal.store_id == "store-002"


def test_given_a_bad_signature_when_verifying_then_the_nonce_is_not_burnt():
    nonces = FakeNonceGuard()
    with pytest.raises(Unauthenticated):
        verify(pos_headers(secret="wrong", nonce="keep"), nonces=nonces)
    assert verify(pos_headers(nonce="keep"), nonces=nonces).kind == "store"


# ---- bearer tokens: HS256 ---------------------------------------------------------------

SECRET = "unit-test-secret-with-enough-bytes-for-hs256"
ISSUER = "loyalty-local"
AUDIENCE = "loyalty-api"


def hs_verifier(links: FakeLinks | None = None) -> TokenVerifier:
    return TokenVerifier(
        secret=SECRET,
        issuer=ISSUER,
        audience=AUDIENCE,
        links=links if links is not None else FakeLinks({"user-1": "mbr_1"}),
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + 600,
        "custom:member_id": "mbr_1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def test_given_a_valid_hs256_token_when_verifying_then_the_member_principal_is_returned():
    principal = hs_verifier().verify(hs_token())
    assert principal == Principal("member", "user-1", member_id="mbr_1")


@pytest.mark.parametrize(
    ("label", "token_kwargs"),
    [
        ("expired", {"exp": int(time.time()) - 60, "iat": int(time.time()) - 700}),
        ("wrong audience", {"aud": "another-api"}),
        ("wrong issuer", {"iss": "someone-else"}),
        ("wrong secret", {"secret": "another-secret-with-enough-bytes-for-hs256!"}),
        ("no exp", {"exp": None}),
        ("no sub", {"sub": None}),
        ("no iat", {"iat": None}),
    ],
)
def test_given_a_bad_hs256_token_when_verifying_then_invalid_token(label, token_kwargs):
    with pytest.raises(Unauthenticated) as excinfo:
        hs_verifier().verify(hs_token(**token_kwargs))
    assert error_code(excinfo) == "INVALID_TOKEN", label


def test_given_an_unsigned_alg_none_token_when_verifying_then_invalid_token():
    token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated) as excinfo:
        hs_verifier().verify(token)
    assert error_code(excinfo) == "INVALID_TOKEN"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
def test_given_a_token_that_is_not_a_jwt_when_verifying_then_invalid_token(token):
    with pytest.raises(Unauthenticated) as excinfo:
        hs_verifier().verify(token)
    assert error_code(excinfo) == "INVALID_TOKEN"


# ---- bearer tokens: Cognito RS256 -------------------------------------------------------

REGION = "cn-north-1"
POOL = "cn-north-1_AbCdEf123"
CLIENT = "app-client-1"
COGNITO_ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"


@dataclass
class _SigningKey:
    key: Any


class FakeJwksClient:
    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key
        self.tokens: list[str] = []

    def get_signing_key_from_jwt(self, token: str) -> _SigningKey:
        self.tokens.append(token)
        return _SigningKey(self.public_key)


class FailingJwksClient:
    def get_signing_key_from_jwt(self, token: str) -> _SigningKey:
        raise jwt.PyJWKClientError("Unable to find a signing key that matches")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(rsa_key) -> FakeJwksClient:
    return FakeJwksClient(rsa_key.public_key())


def cognito_verifier(
    jwks_client: Any, app_client_id: str | None = CLIENT, links: FakeLinks | None = None
) -> TokenVerifier:
    return TokenVerifier(
        secret=None,
        issuer="ignored-for-cognito",
        audience="ignored-for-cognito",
        links=links if links is not None else FakeLinks({"5f1c-cognito-sub": "mbr_9"}),
        user_pool_id=POOL,
        app_client_id=app_client_id,
        region=REGION,
        jwks_client=jwks_client,
    )


def cognito_claims(use: str | None = "id", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": COGNITO_ISSUER,
        "sub": "5f1c-cognito-sub",
        "iat": now,
        "exp": now + 600,
        "token_use": use,
    }
    if use == "id":
        base["aud"] = CLIENT
    elif use == "access":
        base["client_id"] = CLIENT
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def rs_token(private_key: Any, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, private_key, algorithm="RS256", headers={"kid": "k1"})


def test_given_a_cognito_id_token_for_this_client_when_verifying_then_ok(rsa_key, jwks):
    token = rs_token(rsa_key, cognito_claims("id", **{"custom:member_id": "mbr_9"}))
    principal = cognito_verifier(jwks).verify(token)
    assert principal == Principal("member", "5f1c-cognito-sub", member_id="mbr_9")
    assert jwks.tokens == [token]


def test_given_a_cognito_access_token_with_this_client_id_when_verifying_then_ok(rsa_key, jwks):
    token = rs_token(rsa_key, cognito_claims("access", **{"cognito:groups": ["ops"]}))
    principal = cognito_verifier(jwks).verify(token)
    assert principal.kind == "staff"
    assert principal.roles == frozenset({"ops"})


@pytest.mark.parametrize(
    ("label", "payload"),
    [
        ("id token for another client", cognito_claims("id", aud="other-client")),
        ("access token for another client", cognito_claims("access", client_id="other-client")),
        # an access token carries its client in client_id; aud alone does not count
        ("access token with aud only", cognito_claims("access", client_id=None, aud=CLIENT)),
        # and an id token carries it in aud; client_id alone does not count
        ("id token with client_id only", cognito_claims("id", aud=None, client_id=CLIENT)),
        ("no token_use", cognito_claims(None, aud=CLIENT)),
        ("refresh token_use", cognito_claims("refresh", aud=CLIENT, client_id=CLIENT)),
        ("another pool", cognito_claims("id", iss=COGNITO_ISSUER.replace(POOL, "cn-north-1_X"))),
        ("another region", cognito_claims("id", iss=COGNITO_ISSUER.replace(REGION, "us-east-1"))),
        ("local issuer", cognito_claims("id", iss="loyalty-local")),
        ("expired", cognito_claims("id", exp=int(time.time()) - 10)),
    ],
)
def test_given_a_cognito_token_that_does_not_fit_when_verifying_then_invalid_token(
    rsa_key, jwks, label, payload
):
    with pytest.raises(Unauthenticated) as excinfo:
        cognito_verifier(jwks).verify(rs_token(rsa_key, payload))
    assert error_code(excinfo) == "INVALID_TOKEN", label


def test_given_a_token_signed_by_another_rsa_key_when_verifying_then_invalid_token(jwks):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated) as excinfo:
        cognito_verifier(jwks).verify(rs_token(stranger, cognito_claims("id")))
    assert error_code(excinfo) == "INVALID_TOKEN"


def test_given_an_hs256_token_on_the_cognito_path_when_verifying_then_invalid_token(jwks):
    token = jwt.encode(cognito_claims("id"), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated) as excinfo:
        cognito_verifier(jwks).verify(token)
    assert error_code(excinfo) == "INVALID_TOKEN"


def test_given_no_matching_jwks_key_when_verifying_then_invalid_token(rsa_key):
    with pytest.raises(Unauthenticated) as excinfo:
        cognito_verifier(FailingJwksClient()).verify(rs_token(rsa_key, cognito_claims("id")))
    assert error_code(excinfo) == "INVALID_TOKEN"


def test_given_a_pool_and_region_when_building_the_verifier_then_the_issuer_is_cognitos(
    rsa_key, jwks
):
    # The issuer is derived from pool and region and the configured issuer is ignored:
    # a token whose iss is exactly the configured (non-Cognito) issuer is refused.
    verifier = TokenVerifier(
        secret=None,
        issuer=COGNITO_ISSUER + "-configured",
        audience=AUDIENCE,
        links=FakeLinks(),
        user_pool_id=POOL,
        app_client_id=CLIENT,
        region=REGION,
        jwks_client=jwks,
    )
    assert verifier.verify(rs_token(rsa_key, cognito_claims("id"))).subject == "5f1c-cognito-sub"
    with pytest.raises(Unauthenticated):
        verifier.verify(rs_token(rsa_key, cognito_claims("id", iss=COGNITO_ISSUER + "-configured")))


# ---- principals -------------------------------------------------------------------------


def test_given_cognito_groups_when_building_a_principal_then_only_staff_roles_are_kept():
    links = FakeLinks({"s1": "mbr_1"})
    principal = principal_from_claims(
        {
            "sub": "s1",
            "cognito:groups": ["ops", "marketing", "admin"],
            "custom:store_id": "store-9",
        },
        links,
    )
    assert principal == Principal(
        "staff", "s1", roles=frozenset({"ops", "admin"}), store_id="store-9"
    )
    assert principal.is_staff
    assert links.asked == []  # staff tokens never cost a look-up


def test_given_a_single_group_as_a_string_when_building_a_principal_then_it_is_a_role():
    principal = principal_from_claims({"sub": "s1", "cognito:groups": "store_staff"}, FakeLinks())
    assert principal.kind == "staff"
    assert principal.roles == frozenset({"store_staff"})
    assert principal.store_id is None


def test_given_only_unknown_groups_when_building_a_principal_then_it_is_a_member_not_staff():
    principal = principal_from_claims(
        {"sub": "s1", "cognito:groups": ["marketing"]}, FakeLinks({"s1": "mbr_1"})
    )
    assert principal == Principal("member", "s1", member_id="mbr_1")
    assert not principal.is_staff


def test_given_an_unlinked_sub_when_building_a_principal_then_a_registrant_without_member():
    principal = principal_from_claims({"sub": "user-x"}, FakeLinks())
    assert principal == Principal("member", "user-x", member_id=None)


@pytest.mark.parametrize("claim_set", [{}, {"sub": ""}, {"custom:member_id": "mbr_1"}])
def test_given_no_subject_when_building_a_principal_then_invalid_token(claim_set):
    with pytest.raises(Unauthenticated) as excinfo:
        principal_from_claims(claim_set, FakeLinks())
    assert error_code(excinfo) == "INVALID_TOKEN"


# ---- which member a token acts for: the sign-in link, never a claim --------------------


def test_given_a_sub_linked_to_a_member_when_building_a_principal_then_that_member():
    links = FakeLinks({"sub-a": "mbr_a"})
    principal = principal_from_claims({"sub": "sub-a"}, links)
    assert principal == Principal("member", "sub-a", member_id="mbr_a")
    assert links.asked == ["sub-a"]


@pytest.mark.parametrize(
    ("label", "links"),
    [("sub linked to A", {"sub-a": "mbr_a"}), ("sub linked to no one", {})],
)
def test_given_custom_member_id_naming_b_when_the_sub_is_not_bs_then_identity_mismatch(
    label, links
):
    claim_set = {"sub": "sub-a", "custom:member_id": "mbr_b"}
    with pytest.raises(Forbidden) as excinfo:
        principal_from_claims(claim_set, FakeLinks(links))
    assert error_code(excinfo) == "IDENTITY_MISMATCH", label


def test_given_custom_member_id_naming_the_linked_member_then_it_is_accepted():
    claim_set = {"sub": "sub-a", "custom:member_id": "mbr_a"}
    principal = principal_from_claims(claim_set, FakeLinks({"sub-a": "mbr_a"}))
    assert principal.member_id == "mbr_a"


def test_given_a_stage_signed_token_naming_b_with_a_sub_linked_to_a_then_identity_mismatch():
    verifier = hs_verifier(FakeLinks({"user-a": "mbr_a", "user-b": "mbr_b"}))
    with pytest.raises(Forbidden) as excinfo:
        verifier.verify(hs_token(sub="user-a", **{"custom:member_id": "mbr_b"}))
    assert error_code(excinfo) == "IDENTITY_MISMATCH"
    assert verifier.verify(hs_token(sub="user-a", **{"custom:member_id": None})).member_id == (
        "mbr_a"
    )


@pytest.mark.parametrize("use", ["id", "access"])
def test_given_a_cognito_token_naming_b_with_a_sub_linked_to_a_then_identity_mismatch(
    rsa_key, jwks, use
):
    # What a user could mint before the fix: set custom:member_id with UpdateUserAttributes
    # and sign in again; the pool signs whatever the attribute holds.
    links = FakeLinks({"sub-a": "mbr_a", "sub-b": "mbr_b"})
    forged = rs_token(rsa_key, cognito_claims(use, sub="sub-a", **{"custom:member_id": "mbr_b"}))
    with pytest.raises(Forbidden) as excinfo:
        cognito_verifier(jwks, links=links).verify(forged)
    assert error_code(excinfo) == "IDENTITY_MISMATCH"


@pytest.mark.parametrize("use", ["id", "access"])
def test_given_a_cognito_token_without_member_claim_then_the_linked_member_acts(rsa_key, jwks, use):
    links = FakeLinks({"sub-a": "mbr_a"})
    principal = cognito_verifier(jwks, links=links).verify(
        rs_token(rsa_key, cognito_claims(use, sub="sub-a"))
    )
    assert principal == Principal("member", "sub-a", member_id="mbr_a")
    unlinked = cognito_verifier(jwks, links=links).verify(
        rs_token(rsa_key, cognito_claims(use, sub="sub-new"))
    )
    assert unlinked == Principal("member", "sub-new", member_id=None)


def test_given_a_cognito_staff_token_then_no_link_is_looked_up(rsa_key, jwks):
    links = FakeLinks({"staff-sub": "mbr_a"})
    token = rs_token(rsa_key, cognito_claims("id", sub="staff-sub", **{"cognito:groups": ["ops"]}))
    principal = cognito_verifier(jwks, links=links).verify(token)
    assert principal.kind == "staff"
    assert principal.member_id is None
    assert links.asked == []


# ---- the verified phone a sign-up may register ------------------------------------------


@pytest.mark.parametrize(
    ("phone_claims", "expected"),
    [
        ({"phone_number": "+8613900001111", "phone_number_verified": True}, "+8613900001111"),
        ({"phone_number": "+86 139 0000 1111", "phone_number_verified": "true"}, "+8613900001111"),
        ({"phone_number": "+8613900001111", "phone_number_verified": False}, None),
        ({"phone_number": "+8613900001111", "phone_number_verified": "false"}, None),
        ({"phone_number": "+8613900001111"}, None),
        ({"phone_number_verified": True}, None),
        ({"phone_number": "not a phone", "phone_number_verified": True}, None),
        ({"phone_number": 8613900001111, "phone_number_verified": True}, None),
    ],
)
def test_given_phone_claims_when_building_a_member_principal_then_only_a_verified_phone_counts(
    phone_claims, expected
):
    principal = principal_from_claims({"sub": "user-x", **phone_claims}, FakeLinks())
    assert principal.verified_phone == expected


def test_given_a_cognito_id_token_with_a_verified_phone_then_the_principal_carries_it(
    rsa_key, jwks
):
    token = rs_token(
        rsa_key,
        cognito_claims(
            "id", sub="sub-new", phone_number="+8613900001111", phone_number_verified=True
        ),
    )
    assert cognito_verifier(jwks).verify(token).verified_phone == "+8613900001111"


# ---- the per-container cache of sign-in links -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_lookup(links: dict[str, str]) -> tuple[list[str], Any]:
    asked: list[str] = []

    def lookup(subject: str) -> str | None:
        asked.append(subject)
        return links.get(subject)

    return asked, lookup


def test_given_a_found_link_when_asked_again_within_the_ttl_then_no_second_read():
    clock = Clock()
    asked, lookup = counting_lookup({"s": "mbr_1"})
    cache = CachedSignInLinks(lookup, ttl_seconds=30, clock=clock)
    assert cache.member_id_for("s") == "mbr_1"
    clock.now += 29
    assert cache.member_id_for("s") == "mbr_1"
    assert asked == ["s"]
    clock.now += 2  # past the TTL: read again
    assert cache.member_id_for("s") == "mbr_1"
    assert asked == ["s", "s"]


def test_given_no_link_when_the_sign_up_creates_it_then_the_next_request_sees_it():
    links: dict[str, str] = {}
    asked, lookup = counting_lookup(links)
    cache = CachedSignInLinks(lookup, ttl_seconds=30, clock=Clock())
    assert cache.member_id_for("s") is None
    links["s"] = "mbr_1"  # the sign-up
    assert cache.member_id_for("s") == "mbr_1"
    assert asked == ["s", "s"]


def test_given_more_sign_ins_than_the_cache_holds_then_it_stays_bounded():
    _, lookup = counting_lookup({f"s{i}": f"mbr_{i}" for i in range(10)})
    cache = CachedSignInLinks(lookup, max_entries=3, clock=Clock())
    for i in range(10):
        assert cache.member_id_for(f"s{i}") == f"mbr_{i}"
    assert len(cache._links) == 3


@pytest.mark.parametrize(
    "principal",
    [
        Principal("staff", "s1", roles=frozenset({"ops", "admin"}), store_id="store-1"),
        Principal("member", "u1", member_id="mbr_1"),
        Principal("member", "u2"),
        Principal("member", "u3", verified_phone="+8613900001111"),
        Principal("store", "store:store-1", store_id="store-1"),
    ],
)
def test_given_a_principal_when_round_tripping_through_context_then_it_is_unchanged(principal):
    context = principal.to_context()
    assert all(isinstance(value, str) for value in context.values())
    assert Principal.from_context(context) == principal


def test_given_a_staff_principal_when_flattening_then_roles_are_sorted_and_comma_joined():
    context = Principal("staff", "s1", roles=frozenset({"ops", "admin"})).to_context()
    assert context == {
        "kind": "staff",
        "subject": "s1",
        "member_id": "",
        "roles": "admin,ops",
        "store_id": "",
        "verified_phone": "",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer   abc.def  ", "abc.def"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("", None),
    ],
)
def test_given_an_authorization_header_when_extracting_the_bearer_token_then(header, expected):
    assert bearer_token({"authorization": header}) == expected
