"""Who is calling: member and staff JWTs, POS HMAC signatures (api.md, Authentication).

Bearer tokens are verified by the API Gateway authorizer in app.py (with the same
`TokenVerifier` as here) on routes only members or staff may call. Routes a POS may call
too are verified in the app, because a POS signature covers the body and an authorizer
never sees the body. Which member a token acts for is decided here too, from the
sign-in's link in the Members table, not from any claim a user could write.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from chalicelib.domain.phone import normalise_phone
from chalicelib.domain.stores import StoreKey
from chalicelib.errors import Forbidden, InvalidInput, Unauthenticated

STAFF_ROLES = frozenset({"ops", "admin", "store_staff"})
NONCE_TTL_SECONDS = 15 * 60  # outlives the ±5 min window, so a replay is always caught


@dataclass(frozen=True)
class Principal:
    kind: str  # "member" | "staff" | "store"
    subject: str
    member_id: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    store_id: str | None = None
    # A member token's phone, E.164, only when the identity provider verified it.
    verified_phone: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    def to_context(self) -> dict[str, str]:
        """Flat strings: API Gateway authorizer context allows no nested values."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "member_id": self.member_id or "",
            "roles": ",".join(sorted(self.roles)),
            "store_id": self.store_id or "",
            "verified_phone": self.verified_phone or "",
        }

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Principal:
        roles = str(context.get("roles", ""))
        return cls(
            kind=str(context["kind"]),
            subject=str(context["subject"]),
            member_id=str(context.get("member_id") or "") or None,
            roles=frozenset(r for r in roles.split(",") if r),
            store_id=str(context.get("store_id") or "") or None,
            verified_phone=str(context.get("verified_phone") or "") or None,
        )


class SignInLinks(Protocol):
    def member_id_for(self, subject: str) -> str | None:
        """The member whose `cognito_sub` identity is `subject`, or None (not signed up)."""


class CachedSignInLinks:
    """Sign-in `sub` -> member, from the `cognito_sub` identity item (one GetItem).

    Links change only on sign-up, erasure and merge, so a found link is kept for
    `ttl_seconds` per container. A missing link is never kept: the request that finds
    none is usually the sign-up that is about to create it.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._links: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()  # `chalice local` serves requests on threads

    def member_id_for(self, subject: str) -> str | None:
        now = self._clock()
        cached = self._links.get(subject)
        if cached is not None and cached[1] > now:
            return cached[0]
        member_id = self._lookup(subject)  # outside the lock: one slow read blocks no one
        with self._lock:
            if member_id is None:
                self._links.pop(subject, None)
                return None
            if subject not in self._links and len(self._links) >= self._max:
                del self._links[next(iter(self._links))]  # the oldest entry
            self._links[subject] = (member_id, now + self._ttl)
        return member_id


def principal_from_claims(claims: Mapping[str, Any], links: SignInLinks) -> Principal:
    """The one rule for every issuer (stage-signed HS256, Cognito RS256).

    Staff roles come from `cognito:groups` (admin-managed). A member is whoever the
    token's `sub` is linked to by the `cognito_sub` identity item, never a claim the user
    could have written: a `custom:member_id` claim, if present, must name that same
    member or the token is refused. A `sub` linked to no member may only sign up.
    """
    subject = str(claims.get("sub", ""))
    if not subject:
        raise Unauthenticated("token has no subject", code="INVALID_TOKEN")
    groups = claims.get("cognito:groups") or []
    if isinstance(groups, str):
        groups = [groups]
    roles = frozenset(str(g) for g in groups) & STAFF_ROLES
    if roles:
        store = claims.get("custom:store_id")
        return Principal("staff", subject, roles=roles, store_id=str(store) if store else None)
    member_id = links.member_id_for(subject)
    claimed = claims.get("custom:member_id")
    if claimed and str(claimed) != member_id:
        raise Forbidden(
            "the token names a member its sign-in is not linked to", code="IDENTITY_MISMATCH"
        )
    return Principal("member", subject, member_id=member_id, verified_phone=_verified_phone(claims))


def _verified_phone(claims: Mapping[str, Any]) -> str | None:
    """Cognito id tokens carry `phone_number` and `phone_number_verified` (a boolean;
    some issuers send the string "true"). Access tokens carry neither."""
    phone = claims.get("phone_number")
    verified = claims.get("phone_number_verified")
    if not isinstance(phone, str) or not (verified is True or verified == "true"):
        return None
    try:
        return normalise_phone(phone)
    except InvalidInput:
        return None


class TokenVerifier:
    """HS256 tokens signed by the stage (local, tests) or RS256 Cognito user-pool tokens."""

    def __init__(
        self,
        *,
        secret: str | None,
        issuer: str,
        audience: str,
        links: SignInLinks,
        user_pool_id: str | None = None,
        app_client_id: str | None = None,
        region: str | None = None,
        jwks_client: Any = None,
    ) -> None:
        self._secret = secret
        self._links = links
        self._issuer = issuer
        self._audience = audience
        self._pool = user_pool_id
        self._client_id = app_client_id
        self._jwks_client = jwks_client
        if user_pool_id:
            self._issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"

    def verify(self, token: str) -> Principal:
        import jwt  # deferred: PyJWT + cryptography cost ~80 ms of cold start

        try:
            if self._secret is not None:
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=["HS256"],
                    audience=self._audience,
                    issuer=self._issuer,
                    options={"require": ["exp", "iat", "sub"]},
                )
            else:
                claims = self._verify_cognito(token, jwt)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid or expired token", code="INVALID_TOKEN") from exc
        return principal_from_claims(claims, self._links)

    def _verify_cognito(self, token: str, jwt: Any) -> dict[str, Any]:
        if self._jwks_client is None:
            self._jwks_client = jwt.PyJWKClient(
                f"{self._issuer}/.well-known/jwks.json", cache_keys=True, lifespan=3600
            )
        signing_key = self._jwks_client.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            issuer=self._issuer,
            options={"verify_aud": False, "require": ["exp", "iat", "sub", "token_use"]},
        )
        # Cognito id tokens carry the app client in `aud`, access tokens in `client_id`.
        use = claims.get("token_use")
        client = claims.get("aud") if use == "id" else claims.get("client_id")
        if use not in ("id", "access") or (self._client_id and client != self._client_id):
            raise jwt.InvalidTokenError("token is not for this app client")
        return claims


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# ---- POS signatures -------------------------------------------------------------------

# The shape client ids are created with (models/common.ClientId); a POS header or a path id
# of any other shape names nothing and never reaches a DynamoDB key.
ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
POS_HEADERS = ("x-store-id", "x-key-id", "x-timestamp", "x-nonce", "x-signature")


def canonical_request(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()])


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = canonical_request(method, path, timestamp, nonce, body).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class NonceGuard(Protocol):
    def claim(
        self, key: str, kind: str, ttl_seconds: int, info: dict[str, Any] | None = None
    ) -> bool: ...

    def claimed(self, key: str, kind: str) -> bool:
        """Whether `key` was claimed (a strongly consistent read: one read unit)."""
        ...


class PosReplay(Enum):
    """How a POS route keeps a signed request from being replayed (README, "POS replays").

    A signature is valid for ±5 min, so within that window the same headers and body can
    be sent again by whoever saw them. Each route a POS may call declares which guard is
    enough for it (`operation(..., pos_replay=...)`).
    """

    # The nonce is claimed (one conditional write) before the handler runs: a second
    # request with it is 401 NONCE_REUSED. For every route whose answer is not recorded
    # under an id the signature covers: reads (a replay would read today's data, and the
    # signature does not cover the query string) and registration.
    NONCE = "nonce"
    # The route records its answer under a client id in the signed body (store +
    # transaction id, refund id) in the same commit as its effect, so a replay of a
    # request that took effect gets that first answer back and changes nothing. Only a
    # request that did not take effect could do something on replay (a purchase refused
    # for a member not yet registered, or for too few points, can succeed later): its
    # nonce is claimed when it fails, and checked (one read, no write) before running.
    # A request that spends the member's points claims its nonce before it runs, as NONCE
    # does: a refused payment must never succeed on replay, and a claim made only after
    # the failure leaves a gap (a replay between failure and claim, a crash before it).
    RECORDED_ANSWER = "recorded answer"


def nonce_key(store_id: str, nonce: str) -> str:
    return f"NONCE#{store_id}#{nonce}"


def spend_nonce(headers: Mapping[str, str], nonces: NonceGuard) -> bool:
    """Claim a verified request's nonce on a RECORDED_ANSWER route (see PosReplay); False
    when it was claimed already."""
    return nonces.claim(
        nonce_key(headers["x-store-id"], headers["x-nonce"]), "nonce", NONCE_TTL_SECONDS
    )


def is_pos_request(headers: Mapping[str, str]) -> bool:
    return "x-signature" in headers


def verify_pos_request(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    key_lookup: Callable[[str], StoreKey | None],
    nonces: NonceGuard,
    now: datetime,
    max_skew_seconds: int,
    replay: PosReplay = PosReplay.NONCE,
    admit: Callable[[Principal], None] | None = None,
) -> Principal:
    """Check in order of cost: headers, clock, signature, then the nonce: claimed (one
    write), or on a RECORDED_ANSWER route only checked (one read; see PosReplay).

    `admit` (the rate limit) runs once the signature verified and before the nonce: a
    request it refuses leaves its nonce unspent, so the till's retry of the very same
    request after Retry-After goes through."""
    missing = [name for name in POS_HEADERS if not headers.get(name)]
    if missing:
        raise Unauthenticated(
            "missing POS signature headers", code="SIGNATURE_MISSING", details={"headers": missing}
        )
    store_id, key_id = headers["x-store-id"], headers["x-key-id"]
    timestamp, nonce = headers["x-timestamp"], headers["x-nonce"]
    if len(nonce) > 128:
        raise Unauthenticated("nonce too long", code="INVALID_NONCE")
    # Both end up in DynamoDB keys: refuse what no real id looks like before any read.
    if not (ID_SHAPE.fullmatch(store_id) and ID_SHAPE.fullmatch(key_id)):
        raise Unauthenticated("malformed store or key id", code="INVALID_SIGNATURE")
    try:
        sent_at = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unauthenticated("X-Timestamp is not RFC 3339", code="INVALID_TIMESTAMP") from exc
    if sent_at.tzinfo is None:
        raise Unauthenticated("X-Timestamp needs a time zone", code="INVALID_TIMESTAMP")
    if abs((now - sent_at.astimezone(UTC)).total_seconds()) > max_skew_seconds:
        raise Unauthenticated("X-Timestamp outside the allowed window", code="STALE_TIMESTAMP")
    store_key = key_lookup(key_id)
    expected = sign(store_key.secret, method, path, timestamp, nonce, body) if store_key else ""
    # Compare even when the key is unknown, so timing does not tell which keys exist.
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header is client input.
    given = headers["x-signature"].lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected.encode(), given) or store_key is None:
        raise Unauthenticated("signature does not verify", code="INVALID_SIGNATURE")
    if not store_key.active:
        raise Unauthenticated("store key is revoked", code="KEY_REVOKED")
    if store_key.store_id != store_id:
        raise Forbidden("this key does not act for that store", code="STORE_MISMATCH")
    principal = Principal("store", f"store:{store_id}", store_id=store_id)
    if admit is not None:
        admit(principal)
    key = nonce_key(store_id, nonce)
    if replay is PosReplay.RECORDED_ANSWER:
        reused = nonces.claimed(key, "nonce")
    else:
        reused = not nonces.claim(key, "nonce", NONCE_TTL_SECONDS)
    if reused:
        raise Unauthenticated("nonce already used", code="NONCE_REUSED")
    return principal
