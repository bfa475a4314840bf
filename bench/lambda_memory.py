"""Handler time at a Lambda memory size, and what it costs.

Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB
(AWS Lambda developer guide, "Configuring function memory"), enforced as a CFS bandwidth
quota. There is no Lambda here, so each memory size is emulated for real where the
machine allows it: the thread serving the request is moved into a cgroup (v1 `cpu`
controller) whose quota is memory/1769 of one CPU per 100 ms period, while DynamoDB
Local, the "network" side, runs uncapped in its own process, as DynamoDB does for a
function. Where no cgroup can be made, only the model below is reported.

The model, from one uncapped run: time(M) = io_wait + cpu x max(1, 1769 / M), with cpu
the serving thread's CPU time (time.thread_time) and io_wait the rest of the wall time.
It assumes a core here is worth one Lambda vCPU; arm64 (Graviton) CPU time is not
measured here, and is taken as equal to x86's.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FULL_VCPU_MB = 1769
PERIOD_US = 100_000
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")

# List prices, USD (us-east-1, as the rest of the bench): per GB-second of duration.
USD_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}


def cpu_share(memory_mb: int) -> float:
    return min(1.0, memory_mb / FULL_VCPU_MB)


def modelled_ms(wall_ms: float, cpu_ms: float, memory_mb: int) -> float:
    io_wait = max(0.0, wall_ms - cpu_ms)
    return io_wait + cpu_ms / cpu_share(memory_mb)


def usd_per_million(memory_mb: int, billed_ms: float, architecture: str) -> float:
    """Duration cost of a million invocations (requests are priced apart)."""
    return 1e6 * memory_mb / 1024 * billed_ms / 1000 * USD_GB_S[architecture]


class CpuCaps:
    """One cgroup per memory size under the v1 cpu controller, removed on exit.
    `cap(size)` moves the calling thread into that size's cgroup; `uncap()` back."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.sizes = sizes
        self.dirs: dict[int, Path] = {}
        self._root_tasks = CGROUP_CPU / "tasks"

    @staticmethod
    def available() -> bool:
        return (CGROUP_CPU / "cpu.cfs_quota_us").exists() and os.access(CGROUP_CPU, os.W_OK)

    def __enter__(self) -> CpuCaps:
        try:
            for size in self.sizes:
                path = CGROUP_CPU / f"bench-lambda-{os.getpid()}-{size}mb"
                path.mkdir()
                self.dirs[size] = path
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(int(PERIOD_US * cpu_share(size))))
        except OSError:
            self.__exit__(None, None, None)
            raise
        return self

    def cap(self, size: int) -> None:
        (self.dirs[size] / "tasks").write_text(str(threading.get_native_id()))

    def uncap(self) -> None:
        self._root_tasks.write_text(str(threading.get_native_id()))

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError):
            self.uncap()
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                path.rmdir()
        self.dirs.clear()


@contextlib.contextmanager
def caps_if_possible(sizes: tuple[int, ...]) -> Iterator[CpuCaps | None]:
    if not CpuCaps.available():
        yield None
        return
    try:
        caps = CpuCaps(sizes).__enter__()
    except OSError:
        yield None
        return
    try:
        yield caps
    finally:
        caps.__exit__(None, None, None)


@dataclass
class Samples:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall_ms.append(wall)
        self.cpu_ms.append(cpu)

    def p50(self) -> float:
        return statistics.median(self.wall_ms)

    def p99(self) -> float:
        if len(self.wall_ms) == 1:
            return self.wall_ms[0]
        return statistics.quantiles(self.wall_ms, n=100, method="inclusive")[98]

    def cpu_p50(self) -> float:
        return statistics.median(self.cpu_ms)

    def billed_mean_ms(self) -> float:
        return billed_mean_ms(self.wall_ms)

    def modelled_billed_mean_ms(self, memory_mb: int) -> float:
        """The billed mean at `memory_mb` if these (uncapped) purchases ran there: each
        sample modelled on its own, then billed."""
        modelled = (
            modelled_ms(w, c, memory_mb) for w, c in zip(self.wall_ms, self.cpu_ms, strict=True)
        )
        return billed_mean_ms(list(modelled))


def billed_mean_ms(durations_ms: list[float]) -> float:
    """What Lambda bills per invocation on average: every invocation, each rounded up to
    the started millisecond. Not the median: the slow tail is billed too."""
    return statistics.fmean(math.ceil(ms) for ms in durations_ms)
