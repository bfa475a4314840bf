"""Personal data at rest: envelope encryption with AES-256-GCM (docs/architecture.md,
"Personal data at rest").

Three levels of keys:
- the root key: a KMS key in AWS (`KmsKeyWrapper`), a 32-byte key file locally
  (`LocalKeyWrapper`). It only wraps and unwraps the program's key-encryption key.
- the program's key-encryption key (KEK): 32 random bytes, stored wrapped by the root
  key in the Program table (`KEYRING` / `KEK#<n>`), created once (conditional put: two
  containers racing keep the first), unwrapped once per container and cached
  (`KEK_CACHE_SECONDS`), so the root key is called about once per container per cache
  period, never per request.
- a data key per member: 32 random bytes wrapped by the KEK (AAD: the member id), stored
  with the member (`MemberItem.data_key`). The member's personal fields are one JSON
  blob encrypted under it (`MemberItem.pii`, AAD: the member id), so reading a member
  is one unwrap and one decrypt, both local. The erase removes blob and wrapped key
  from the live table; a backup (PITR, 35 days), an export or the stream (24 h) still
  holds both, readable by whoever can also use the root key (docs/architecture.md,
  "Personal data at rest": what erasure does not reach).

POS key secrets are encrypted under the KEK directly (AAD: the key id).

`cryptography` is imported on first use, never by `import app` (cold start).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

KEK_CACHE_SECONDS = 900.0
KEYRING_PK = "KEYRING"
CURRENT_KEK = 1  # the KEK generation new data is written under
_VERSION = b"\x01"  # format byte of every sealed value: 1 = AES-256-GCM, 12-byte nonce
_NONCE = 12
ROOT = Path(__file__).resolve().parents[2]


class KeyUnavailable(RuntimeError):
    """The key material cannot be had (no root key configured, the KEK missing where it
    may not be created): a deployment mistake, never bad input."""


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + bytes(_aesgcm(key).encrypt(nonce, plaintext, aad))


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Raises `cryptography.exceptions.InvalidTag` for a wrong key, AAD or a changed byte."""
    if sealed[:1] != _VERSION:
        raise ValueError("unknown sealed-value format")
    nonce = sealed[1 : 1 + _NONCE]
    return bytes(_aesgcm(key).decrypt(nonce, sealed[1 + _NONCE :], aad))


# ---- the root key -----------------------------------------------------------------------


class KeyWrapper(Protocol):
    """Wraps the KEK under the root key. `context` is bound to the wrapped value (KMS
    EncryptionContext, AES-GCM AAD locally): a value unwrapped with another fails."""

    def wrap(self, key: bytes, context: dict[str, str]) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes: ...


def _context_aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


class LocalKeyWrapper:
    """Locally: AES-GCM under a 32-byte key read from a file. A missing file is created
    once (linked into place, mode 0600): two processes racing both read the winner's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0
        self._key: bytes | None = None

    def _root(self) -> bytes:
        if self._key is None:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Written whole under a private name, then linked into place: a process
                # racing this one sees no file or the whole key, never a partial one.
                draft = self.path.with_name(
                    f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}"
                )
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(os.urandom(32).hex().encode())
                try:
                    os.link(draft, self.path)
                except FileExistsError:
                    pass  # another process created it first: use theirs
                finally:
                    draft.unlink()
            raw = bytes.fromhex(self.path.read_text().strip())
            if len(raw) != 32:
                raise KeyUnavailable(f"{self.path} does not hold a 32-byte hex key")
            self._key = raw
        return self._key

    def wrap(self, key: bytes, context: dict[str, str]) -> bytes:
        self.calls += 1
        return seal(self._root(), key, _context_aad(context))

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        self.calls += 1
        return open_sealed(self._root(), wrapped, _context_aad(context))


class KmsKeyWrapper:
    """In AWS: KMS Encrypt/Decrypt under one symmetric key, with an EncryptionContext."""

    def __init__(self, key_id: str, region: str, client: Any = None) -> None:
        self.key_id = key_id
        self.calls = 0
        self._region = region
        self._client = client

    def _kms(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("kms", region_name=self._region)
        return self._client

    def wrap(self, key: bytes, context: dict[str, str]) -> bytes:
        self.calls += 1
        out = self._kms().encrypt(KeyId=self.key_id, Plaintext=key, EncryptionContext=context)
        return bytes(out["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        self.calls += 1
        out = self._kms().decrypt(
            CiphertextBlob=wrapped, KeyId=self.key_id, EncryptionContext=context
        )
        return bytes(out["Plaintext"])


# ---- the program's key-encryption key ----------------------------------------------------


class KekStore(Protocol):
    def get(self, generation: int) -> bytes | None: ...

    def put_if_absent(self, generation: int, wrapped: bytes) -> bool: ...


class DynamoKekStore:
    """`KEYRING` / `KEK#<n>` in the Program table (`KeyringItem`)."""

    def get(self, generation: int) -> bytes | None:
        from pynamodb.exceptions import DoesNotExist

        from chalicelib.dal.tables import KeyringItem

        try:
            item = KeyringItem.get(KEYRING_PK, f"KEK#{generation}", consistent_read=True)
        except DoesNotExist:
            return None
        return bytes(item.wrapped)

    def put_if_absent(self, generation: int, wrapped: bytes) -> bool:
        from chalicelib.dal.tables import KeyringItem, put_if_absent
        from chalicelib.domain.clock import rfc3339, utc_now

        item = KeyringItem(
            pk=KEYRING_PK, sk=f"KEK#{generation}", wrapped=wrapped, created_at=rfc3339(utc_now())
        )
        return put_if_absent(item)


class Keyring:
    """The KEK, unwrapped at most once per container per `ttl` seconds."""

    def __init__(
        self,
        wrapper: KeyWrapper,
        store: KekStore,
        *,
        ttl: float = KEK_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_use: Callable[[bool], None] | None = None,
    ) -> None:
        self.wrapper = wrapper
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, bytes] | None = None
        self._on_use = on_use

    @staticmethod
    def _context(generation: int) -> dict[str, str]:
        return {"purpose": "loyalty-kek", "generation": str(generation)}

    def kek(self, *, create: bool = False) -> bytes:
        """The current KEK. Only a writer (`create=True`) makes it when it does not exist
        yet; a reader finding none has nothing encrypted to read."""
        if self._on_use is not None:
            self._on_use(create)
        now = self._clock()
        cached = self._cached
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with self._lock:
            cached = self._cached
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
            key = self._load(create)
            self._cached = (now, key)
            return key

    def _load(self, create: bool) -> bytes:
        context = self._context(CURRENT_KEK)
        wrapped = self._store.get(CURRENT_KEK)
        if wrapped is None:
            if not create:
                raise KeyUnavailable("no key-encryption key yet")
            fresh = os.urandom(32)
            if self._store.put_if_absent(CURRENT_KEK, self.wrapper.wrap(fresh, context)):
                return fresh
            wrapped = self._store.get(CURRENT_KEK)  # another container created it first
            if wrapped is None:
                raise KeyUnavailable("key-encryption key vanished")
        return self.wrapper.unwrap(wrapped, context)

    def forget(self) -> None:
        self._cached = None


# ---- members' personal fields and POS secrets --------------------------------------------


@dataclass(frozen=True)
class Sealed:
    pii: bytes
    data_key: bytes


def _member_aad(member_id: str) -> bytes:
    return f"member:{member_id}".encode()


def _data_key_aad(member_id: str) -> bytes:
    return f"member-key:{member_id}".encode()


class PiiCipher:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def seal_member(
        self, member_id: str, fields: dict[str, Any], data_key: bytes | None = None
    ) -> Sealed:
        """The member's personal fields under its data key: the wrapped `data_key` given
        (an update keeps the member's key), or a fresh one."""
        kek = self.keyring.kek(create=True)
        if data_key is None:
            plain_key = os.urandom(32)
            data_key = seal(kek, plain_key, _data_key_aad(member_id))
        else:
            plain_key = open_sealed(kek, data_key, _data_key_aad(member_id))
        blob = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
        return Sealed(seal(plain_key, blob, _member_aad(member_id)), data_key)

    def open_member(self, member_id: str, pii: bytes, data_key: bytes) -> dict[str, Any]:
        kek = self.keyring.kek()
        plain_key = open_sealed(kek, data_key, _data_key_aad(member_id))
        fields: dict[str, Any] = json.loads(open_sealed(plain_key, pii, _member_aad(member_id)))
        return fields

    def seal_secret(self, key_id: str, secret: str) -> bytes:
        return seal(self.keyring.kek(create=True), secret.encode(), f"storekey:{key_id}".encode())

    def open_secret(self, key_id: str, sealed: bytes) -> str:
        return open_sealed(self.keyring.kek(), sealed, f"storekey:{key_id}".encode()).decode()


# ---- one cipher per container -----------------------------------------------------------

_lock = threading.Lock()
_current: PiiCipher | None = None
# Tests (tests/iam_check.py) watch key use: a cached KEK hides which function used it.
key_use_hooks: list[Callable[[bool], None]] = []


def _notify(create: bool) -> None:
    for hook in list(key_use_hooks):
        hook(create)


def local_key_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def build_cipher() -> PiiCipher:
    from chalicelib.wiring import services

    settings = services().settings  # also binds the item classes to the stage's tables
    wrapper: KeyWrapper
    if settings.pii_kms_key_id:
        wrapper = KmsKeyWrapper(settings.pii_kms_key_id, settings.region)
    elif settings.pii_local_key_file:
        wrapper = LocalKeyWrapper(local_key_path(settings.pii_local_key_file))
    else:
        raise KeyUnavailable("configure PII_KMS_KEY_ID (AWS) or PII_LOCAL_KEY_FILE (local)")
    return PiiCipher(Keyring(wrapper, DynamoKekStore(), on_use=_notify))


def cipher() -> PiiCipher:
    """The container's cipher, built from the settings on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = build_cipher()
    return _current


def use_cipher(value: PiiCipher | None) -> None:
    """Replace the container's cipher (tests, the bench's plaintext baseline); None
    builds it from the settings again on next use."""
    global _current
    _current = value


__all__ = [
    "DynamoKekStore",
    "KeyUnavailable",
    "KeyWrapper",
    "Keyring",
    "KmsKeyWrapper",
    "LocalKeyWrapper",
    "PiiCipher",
    "Sealed",
    "cipher",
    "use_cipher",
]
