"""bench/targets.py's CPU accounting: the scheduler's exact runtime split in the ticks'
proportion, and the ticks alone where the exact figure cannot be trusted."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench.targets import CpuSample, cpu_sample, cpu_spent

T = frozenset({1, 2})


def test_exact_total_split_in_the_ticks_proportion() -> None:
    before = CpuSample(user=1.00, system=2.00, exact=3.0000, threads=T)
    after = CpuSample(user=1.01, system=2.03, exact=3.0412, threads=T)
    user, system = cpu_spent(before, after)
    assert user + system == pytest.approx(0.0412)
    assert user == pytest.approx(0.0412 * 0.01 / 0.04)


def test_ticks_alone_without_exact_figures_or_when_threads_changed() -> None:
    before = CpuSample(user=1.00, system=2.00, exact=None, threads=frozenset())
    after = CpuSample(user=1.05, system=2.10, exact=None, threads=frozenset())
    assert cpu_spent(before, after) == pytest.approx((0.05, 0.10))
    # a thread that left took its runtime along: the exact sums are not comparable
    before = CpuSample(user=1.00, system=2.00, exact=9.0, threads=frozenset({1, 2, 3}))
    after = CpuSample(user=1.05, system=2.10, exact=3.2, threads=frozenset({1, 2}))
    assert cpu_spent(before, after) == pytest.approx((0.05, 0.10))


def test_no_tick_in_the_interval_counts_the_runtime_as_system() -> None:
    before = CpuSample(user=1.0, system=2.0, exact=3.0, threads=T)
    after = CpuSample(user=1.0, system=2.0, exact=3.004, threads=T)
    assert cpu_spent(before, after) == pytest.approx((0.0, 0.004))


def test_a_real_process_spending_cpu_is_seen_to_within_a_tick() -> None:
    pids = [os.getpid()]
    before, start = cpu_sample(pids), time.process_time()
    while time.process_time() < start + 0.2:  # bounded: 0.2 s of this process's CPU
        pass
    after, spent = cpu_sample(pids), time.process_time() - start
    user, system = cpu_spent(before, after)
    # the kernel's own figure for this process over the same stretch, to a tick (10 ms)
    assert spent - 0.011 <= user + system <= spent + 0.011
    if before.exact is not None:  # the exact figure sums every thread, this one included
        assert threading.get_native_id() in before.threads
