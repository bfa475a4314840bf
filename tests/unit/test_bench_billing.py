"""The purchases bench bills Lambda time as Lambda does: every invocation, each rounded up
to the millisecond, so the expected duration is the mean of those, not the median."""

from __future__ import annotations

import math

import pytest

from bench import lambda_memory
from bench.purchases import USD_LAMBDA_PER_M, billed_ms_at, costs

# Nine quick purchases and one slow one: the p50 says 11 billed ms, the bill says more.
SKEWED = [10.2] * 9 + [300.0]


def samples(wall: list[float], cpu: list[float] | None = None) -> lambda_memory.Samples:
    out = lambda_memory.Samples()
    for i, ms in enumerate(wall):
        out.add(ms, cpu[i] if cpu else ms)
    return out


def test_given_durations_then_each_is_rounded_up_before_the_mean():
    assert lambda_memory.billed_mean_ms([0.2, 1.0, 1.01, 10.5]) == (1 + 1 + 2 + 11) / 4


def test_given_a_slow_tail_at_an_emulated_size_then_the_billed_mean_counts_it():
    measured = samples(SKEWED)

    billed = billed_ms_at(512, {"uncapped": samples([1.0]), 512: measured})

    assert billed == pytest.approx((9 * 11 + 300) / 10)
    assert billed > math.ceil(measured.p50())


def test_given_a_size_not_emulated_then_each_uncapped_purchase_is_modelled_then_billed():
    # 4 ms waiting and 6 ms CPU each; at 256 MB the CPU part takes 1769/256 as long.
    uncapped = samples([10.0, 10.0], cpu=[6.0, 6.0])

    billed = billed_ms_at(256, {"uncapped": uncapped})

    assert billed == math.ceil(4.0 + 6.0 * 1769 / 256)


def test_given_a_billed_mean_then_the_lambda_part_is_priced_on_it_unrounded():
    billed = billed_ms_at(512, {512: samples(SKEWED)})

    usd = costs(0.0, 0.0, billed, memory_mb=512, architecture="arm64", api="http")

    expected = USD_LAMBDA_PER_M + lambda_memory.usd_per_million(512, 39.9, "arm64")
    assert usd["usd_lambda"] == round(expected, 3)
