"""Personal data at rest: what encryption costs a member read and a purchase, and how
often the root key (KMS in AWS) is called, on DynamoDB Local (never moto).

1. Latency, in-process (chalice.test.Client), interleaved in one run: a staff read of a
   member (`GET /v1/members/{id}`, the full view: the personal fields decrypted) and a
   signed POS purchase by card, each with the app's cipher (AES-256-GCM envelope,
   chalicelib/dal/crypto.py) and with a bench-only plaintext cipher as the baseline (the
   same JSON blob and item layout, no cryptography). Each kind reads and buys for its own
   members, registered under its own cipher.
2. Root-key calls: a fresh container state (services and cipher forgotten, as a new
   Lambda container starts), then 500 member reads and 500 purchases; every wrap or
   unwrap of the root key is counted (the local key file's wrapper stands in for KMS:
   the same calls would be KMS Encrypt/Decrypt).
"""

from __future__ import annotations

import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import dynamodb_local, local_env
from bench.purchases import (
    create_pos_key,
    environment,
    new_txn_id,
    percentile,
    purchase_body,
    registration_body,
    staff_headers,
)

# Repetitions (full, quick).
TIMED = (300, 80)
WARMUP = 20
MEMBERS_PER_KIND = 8
KMS_REQUESTS = 1000


def log(message: str) -> None:
    print(f"[privacy] {message}", file=sys.stderr, flush=True)


def plaintext_cipher() -> Any:
    """The baseline: the app's layout (one `pii` blob, a `data_key`), no encryption."""
    from chalicelib.dal.crypto import PiiCipher, Sealed

    class PlaintextCipher(PiiCipher):
        def __init__(self) -> None:
            pass

        def seal_member(
            self, member_id: str, fields: dict[str, Any], data_key: bytes | None = None
        ) -> Sealed:
            blob = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
            return Sealed(blob, b"plain")

        def open_member(self, member_id: str, pii: bytes, data_key: bytes) -> dict[str, Any]:
            fields: dict[str, Any] = json.loads(pii)
            return fields

        def seal_secret(self, key_id: str, secret: str) -> bytes:
            return secret.encode()

        def open_secret(self, key_id: str, sealed: bytes) -> str:
            return sealed.decode()

    return PlaintextCipher()


class Run:
    def __init__(self, client: Any, pos: Any) -> None:
        self.client = client
        self.pos = pos
        self.headers = staff_headers()

    def register(self, n: int) -> tuple[str, str]:
        body, card = registration_body(n)
        answer = self.client.http.post("/v1/members", headers=self.headers, body=body)
        if answer.status_code != 201:
            raise RuntimeError(f"registration answered {answer.status_code}: {answer.body!r}")
        return json.loads(answer.body)["member_id"], card

    def read(self, member_id: str) -> float:
        t0 = time.perf_counter()
        answer = self.client.http.get(f"/v1/members/{member_id}", headers=self.headers)
        elapsed = (time.perf_counter() - t0) * 1000.0
        if answer.status_code != 200 or json.loads(answer.body)["masked"]:
            raise RuntimeError(f"read answered {answer.status_code}: {answer.body!r}")
        return elapsed

    def purchase(self, card: str) -> float:
        body = purchase_body(new_txn_id(), card)
        headers = self.pos.headers("POST", "/v1/transactions", body, secrets.token_hex(16))
        t0 = time.perf_counter()
        answer = self.client.http.post("/v1/transactions", headers=headers, body=body)
        elapsed = (time.perf_counter() - t0) * 1000.0
        if answer.status_code != 201:
            raise RuntimeError(f"purchase answered {answer.status_code}: {answer.body!r}")
        return elapsed


def run(quick: bool = False) -> dict[str, Any]:
    import boto3
    from chalice.test import Client

    import app as app_module
    from chalicelib.dal import crypto
    from chalicelib.wiring import reset_services
    from local.infra import create_tables
    from local.seed import seed

    timed = TIMED[1 if quick else 0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp,
        dynamodb_local("privacy") as endpoint,
    ):
        env = local_env(endpoint)
        env["PII_LOCAL_KEY_FILE"] = str(Path(tmp) / "root.key")
        with environment(env):
            create_tables(boto3.client("dynamodb", region_name=env["AWS_REGION"]), env)
            reset_services()
            seed()
            plain = plaintext_cipher()
            with Client(app_module.app, stage_name="local") as client:
                # Each kind's POS key and members are written under its own cipher.
                crypto.use_cipher(plain)
                plain_run = Run(client, create_pos_key())
                plain_members = [plain_run.register(n) for n in range(MEMBERS_PER_KIND)]
                crypto.use_cipher(None)
                real = crypto.cipher()
                enc_run = Run(client, create_pos_key())
                enc_members = [enc_run.register(100 + n) for n in range(MEMBERS_PER_KIND)]
                log(f"registered {2 * MEMBERS_PER_KIND} members; timing {timed} of each kind")

                samples: dict[str, list[float]] = {
                    "read": [],
                    "read_plain": [],
                    "purchase": [],
                    "purchase_plain": [],
                }
                for i in range(WARMUP + timed):
                    pm, pc = plain_members[i % MEMBERS_PER_KIND]
                    em, ec = enc_members[i % MEMBERS_PER_KIND]

                    # One container (the program caches stay warm); the cipher switches,
                    # and which kind goes first alternates (no order bias).
                    def plain_pair(pm: str = pm, pc: str = pc) -> tuple[float, float]:
                        crypto.use_cipher(plain)
                        return plain_run.read(pm), plain_run.purchase(pc)

                    def enc_pair(em: str = em, ec: str = ec) -> tuple[float, float]:
                        crypto.use_cipher(real)
                        return enc_run.read(em), enc_run.purchase(ec)

                    if i % 2:
                        read_plain, purchase_plain = plain_pair()
                        read_enc, purchase_enc = enc_pair()
                    else:
                        read_enc, purchase_enc = enc_pair()
                        read_plain, purchase_plain = plain_pair()
                    if i >= WARMUP:
                        samples["read_plain"].append(read_plain)
                        samples["purchase_plain"].append(purchase_plain)
                        samples["read"].append(read_enc)
                        samples["purchase"].append(purchase_enc)

                # A new container: nothing cached, then 1,000 requests.
                reset_services()
                crypto.use_cipher(None)
                fresh = crypto.cipher()
                wrapper = fresh.keyring.wrapper
                calls_before = getattr(wrapper, "calls", 0)
                fresh_run = Run(client, enc_run.pos)
                for i in range(KMS_REQUESTS // 2):
                    em, ec = enc_members[i % MEMBERS_PER_KIND]
                    fresh_run.read(em)
                    fresh_run.purchase(ec)
                root_calls = getattr(wrapper, "calls", 0) - calls_before

                micro = crypto_micro(real)
            crypto.use_cipher(None)

    def p50(name: str) -> float:
        return round(statistics.median(samples[name]), 2)

    figures = {
        "member_read_p50_ms": p50("read"),
        "member_read_plain_p50_ms": p50("read_plain"),
        "member_read_ratio": round(p50("read") / p50("read_plain"), 3),
        "purchase_p50_ms": p50("purchase"),
        "purchase_plain_p50_ms": p50("purchase_plain"),
        "purchase_ratio": round(p50("purchase") / p50("purchase_plain"), 3),
        "kms_calls_per_1000_requests": round(root_calls * 1000 / KMS_REQUESTS, 3),
    }
    return {
        "figures": figures,
        "units": {
            "member_read_p50_ms": "ms",
            "member_read_plain_p50_ms": "ms",
            "member_read_ratio": "x",
            "purchase_p50_ms": "ms",
            "purchase_plain_p50_ms": "ms",
            "purchase_ratio": "x",
            "kms_calls_per_1000_requests": "calls",
        },
        "goals": {
            "member_read_ratio": {"max": 1.1},
            "purchase_ratio": {"max": 1.05},
            "kms_calls_per_1000_requests": {"max": 2},
        },
        "info": {
            "timed_per_kind": timed,
            "p99_ms": {name: round(percentile(values, 99), 2) for name, values in samples.items()},
            "root_key_calls_in_1000_requests": root_calls,
            "crypto_us": micro,
        },
    }


def crypto_micro(cipher: Any, n: int = 2000) -> dict[str, float]:
    """The cipher alone, warm KEK: microseconds to seal and to open one member's fields."""
    fields = {
        "phone": "+8613912345678",
        "name": "测试会员",
        "birthday": "1990-05-17",
        "email": "member@example.com",
        "external_ids": {"pos_card": "C12345678"},
    }
    sealed = cipher.seal_member("mbr_bench", fields)
    t0 = time.perf_counter()
    for _ in range(n):
        cipher.open_member("mbr_bench", sealed.pii, sealed.data_key)
    opened = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        cipher.seal_member("mbr_bench", fields)
    sealed_us = (time.perf_counter() - t0) / n * 1e6
    return {"open_member_us": round(opened, 1), "seal_member_us": round(sealed_us, 1)}
