"""Personal data at rest (chalicelib/dal/crypto.py): envelope encryption, the KEK cache,
the root-key wrappers (local file, KMS on moto) and the hash key from Secrets Manager."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from chalicelib.dal import crypto
from chalicelib.dal.crypto import Keyring, KeyUnavailable, LocalKeyWrapper, PiiCipher

FIELDS = {
    "phone": "+8613812345678",
    "name": "韩梅梅",
    "birthday": "1990-05-17",
    "email": "meimei@example.com",
    "external_ids": {"wechat_unionid": "o-union-1"},
}


class MemoryKekStore:
    def __init__(self) -> None:
        self.items: dict[int, bytes] = {}
        self.gets = 0
        self._lock = threading.Lock()

    def get(self, generation: int) -> bytes | None:
        self.gets += 1
        return self.items.get(generation)

    def put_if_absent(self, generation: int, wrapped: bytes) -> bool:
        with self._lock:
            if generation in self.items:
                return False
            self.items[generation] = wrapped
            return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wrapper(tmp_path: Path) -> LocalKeyWrapper:
    return LocalKeyWrapper(tmp_path / "state" / "root.key")


def make_cipher(wrapper: Any, store: MemoryKekStore | None = None, **kw: Any) -> PiiCipher:
    return PiiCipher(Keyring(wrapper, store or MemoryKekStore(), **kw))


def test_given_personal_fields_when_sealed_then_they_open_only_for_that_member(wrapper):
    cipher = make_cipher(wrapper)
    sealed = cipher.seal_member("m-1", FIELDS)

    assert cipher.open_member("m-1", sealed.pii, sealed.data_key) == FIELDS
    for value in ("+8613812345678", "13812345678", "韩梅梅".encode(), "1990-05-17", "meimei"):
        raw = value if isinstance(value, bytes) else value.encode()
        assert raw not in sealed.pii
        assert raw not in sealed.data_key
    with pytest.raises(InvalidTag):  # another member's id: the AAD differs
        cipher.open_member("m-2", sealed.pii, sealed.data_key)


def test_given_two_members_when_their_blobs_or_keys_are_swapped_then_neither_opens(wrapper):
    cipher = make_cipher(wrapper)
    a = cipher.seal_member("m-a", FIELDS)
    b = cipher.seal_member("m-b", {"phone": "+8613900000000"})
    with pytest.raises(InvalidTag):
        cipher.open_member("m-a", a.pii, b.data_key)
    with pytest.raises(InvalidTag):
        cipher.open_member("m-a", b.pii, a.data_key)
    tampered = a.pii[:-1] + bytes([a.pii[-1] ^ 1])
    with pytest.raises(InvalidTag):
        cipher.open_member("m-a", tampered, a.data_key)


def test_given_the_same_fields_when_sealed_twice_then_the_bytes_differ(wrapper):
    """A fresh nonce and data key each time: equal phones do not show as equal blobs."""
    cipher = make_cipher(wrapper)
    first, second = cipher.seal_member("m-1", FIELDS), cipher.seal_member("m-1", FIELDS)
    assert first.pii != second.pii
    assert first.data_key != second.data_key


def test_given_a_warm_container_when_many_members_are_read_then_the_kek_is_unwrapped_once(
    wrapper,
):
    store = MemoryKekStore()
    clock = Clock()
    writer = make_cipher(wrapper, store, clock=clock)
    sealed = [writer.seal_member(f"m-{i}", FIELDS) for i in range(50)]
    assert wrapper.calls == 1  # created: one wrap, never unwrapped by the writer

    reader = make_cipher(wrapper, store, clock=clock)  # another container
    for _ in range(4):
        for i, s in enumerate(sealed):
            assert reader.open_member(f"m-{i}", s.pii, s.data_key)["name"] == "韩梅梅"
    assert wrapper.calls == 2  # 200 reads: one unwrap
    assert store.gets == 2  # and one read of KEYRING per container

    clock.now += crypto.KEK_CACHE_SECONDS + 1  # the cache period is over
    reader.open_member("m-0", sealed[0].pii, sealed[0].data_key)
    assert wrapper.calls == 3


def test_given_no_kek_yet_when_a_reader_asks_then_it_is_refused_and_a_writer_creates_it(
    wrapper,
):
    store = MemoryKekStore()
    with pytest.raises(KeyUnavailable):
        Keyring(wrapper, store).kek()
    assert store.items == {}
    key = Keyring(wrapper, store).kek(create=True)
    assert Keyring(wrapper, store).kek() == key


def test_given_two_containers_creating_the_kek_at_once_then_both_use_the_first(wrapper):
    store = MemoryKekStore()
    keyrings = [Keyring(wrapper, store) for _ in range(8)]
    keys: list[bytes] = []
    barrier = threading.Barrier(len(keyrings))

    def create(ring: Keyring) -> None:
        barrier.wait()
        keys.append(ring.kek(create=True))

    threads = [threading.Thread(target=create, args=(ring,)) for ring in keyrings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1
    assert len(store.items) == 1


def test_given_no_key_file_when_first_used_then_it_is_created_once_private(tmp_path):
    path = tmp_path / "state" / "root.key"
    first = LocalKeyWrapper(path)
    wrapped = first.wrap(b"k" * 32, {"purpose": "test"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    content = path.read_text()
    again = LocalKeyWrapper(path)  # another process: reads the same file
    assert again.unwrap(wrapped, {"purpose": "test"}) == b"k" * 32
    assert path.read_text() == content
    with pytest.raises(InvalidTag):
        again.unwrap(wrapped, {"purpose": "other"})


def test_given_a_pos_key_secret_when_sealed_then_it_opens_only_under_its_key_id(wrapper):
    cipher = make_cipher(wrapper)
    sealed = cipher.seal_secret("k-1", "ab" * 32)
    assert b"ab" * 32 not in sealed
    assert cipher.open_secret("k-1", sealed) == "ab" * 32
    with pytest.raises(InvalidTag):
        cipher.open_secret("k-2", sealed)


# ---- AWS: KMS and Secrets Manager on moto ------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    from moto import mock_aws

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "cn-north-1"),
    ):
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def test_given_a_kms_key_when_the_kek_is_wrapped_then_kms_unwraps_it_with_its_context(aws):
    import boto3

    kms = boto3.client("kms", region_name="cn-north-1")
    key_id = kms.create_key(Description="pii")["KeyMetadata"]["KeyId"]
    wrapper = crypto.KmsKeyWrapper(key_id, "cn-north-1")
    store = MemoryKekStore()

    writer = make_cipher(wrapper, store)
    sealed = writer.seal_member("m-1", FIELDS)
    assert wrapper.calls == 1
    reader_wrapper = crypto.KmsKeyWrapper(key_id, "cn-north-1")
    reader = make_cipher(reader_wrapper, store)
    for _ in range(100):
        assert reader.open_member("m-1", sealed.pii, sealed.data_key) == FIELDS
    assert reader_wrapper.calls == 1  # one Decrypt for 100 reads

    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        reader_wrapper.unwrap(store.items[1], {"purpose": "another"})


def test_given_the_hash_key_in_secrets_manager_when_identities_are_hashed_then_it_is_read_once(
    aws,
):
    import boto3

    from chalicelib.domain.members import IdentityHasher
    from chalicelib.wiring import SecretHasher

    secrets = boto3.client("secretsmanager", region_name="cn-north-1")
    arn = secrets.create_secret(Name="pii-hash", SecretString="s3cret-hash-key")["ARN"]
    calls: list[str] = []

    def count(**kwargs: Any) -> None:
        calls.append(kwargs["event_name"])

    boto3.DEFAULT_SESSION = None
    hasher = SecretHasher(arn, "cn-north-1")
    original = boto3.client

    def client(*args: Any, **kw: Any) -> Any:
        made = original(*args, **kw)
        made.meta.events.register("before-call.secrets-manager.GetSecretValue", count)
        return made

    import unittest.mock

    with unittest.mock.patch.object(boto3, "client", client):
        keys = {hasher.identity("phone", f"+86138000000{i:02d}").key for i in range(20)}
    assert len(keys) == 20
    assert len(calls) == 1
    assert hasher.identity("phone", "+8613800000001") == IdentityHasher("s3cret-hash-key").identity(
        "phone", "+8613800000001"
    )


# ---- the member item ---------------------------------------------------------------------


def test_given_a_member_when_written_then_the_item_holds_no_personal_field_in_clear(
    moto_tables,
):
    from chalicelib.dal.members import from_item, to_item
    from chalicelib.domain.members import Member

    now = datetime(2026, 3, 1, tzinfo=UTC)
    member = Member(
        member_id="m-7",
        phone="+8613812345678",
        channel="app",
        created_at=now,
        updated_at=now,
        name="韩梅梅",
        gender="female",
        birthday=date(1990, 5, 17),
        email="meimei@example.com",
        external_ids={"pos_card": "C-0042"},
    )
    item = to_item(member)
    raw = repr(item.serialize())
    for value in ("13812345678", "韩梅梅", "1990-05-17", "meimei@example.com", "C-0042", "female"):
        assert value not in raw
    assert item.birthday_key is not None
    assert item.birthday_key.startswith("0517#")
    assert from_item(item) == member
    wallet_view = from_item(item, personal=False)
    assert (wallet_view.phone, wallet_view.name, wallet_view.birthday) == ("", None, None)


def test_given_the_payment_secret_in_secrets_manager_when_notifications_arrive_then_it_is_read_once(
    aws, monkeypatch
):
    import boto3

    from chalicelib import wiring

    secrets = boto3.client("secretsmanager", region_name="cn-north-1")
    arn = secrets.create_secret(Name="payments", SecretString="provider-secret")["ARN"]
    for name, value in {
        "MEMBERS_TABLE": "m",
        "PROGRAM_TABLE": "p",
        "RUNTIME_TABLE": "r",
        "IDEMPOTENCY_TABLE": "i",
        "JWT_SECRET": "j",
        "PAYMENT_NOTIFICATION_SECRET_ID": arn,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYMENT_NOTIFICATION_SECRET", raising=False)
    wiring.reset_services()
    try:
        reads = wiring.secret_value.cache_info().misses
        assert {wiring.payment_notification_secret() for _ in range(10)} == {"provider-secret"}
        assert wiring.secret_value.cache_info().misses == reads + 1
    finally:
        wiring.reset_services()


def test_given_processes_racing_to_create_the_key_file_then_all_read_one_whole_key(tmp_path):
    path = tmp_path / "race" / "root.key"
    wrappers = [LocalKeyWrapper(path) for _ in range(8)]
    barrier = threading.Barrier(len(wrappers))
    wrapped: list[bytes] = []

    def first_use(wrapper: LocalKeyWrapper) -> None:
        barrier.wait()
        wrapped.append(wrapper.wrap(b"k" * 32, {"purpose": "race"}))

    threads = [threading.Thread(target=first_use, args=(w,)) for w in wrappers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wrapped) == len(wrappers)
    reader = LocalKeyWrapper(path)
    assert {reader.unwrap(w, {"purpose": "race"}) for w in wrapped} == {b"k" * 32}
    assert sorted(p.name for p in path.parent.iterdir()) == ["root.key"]  # no drafts left
