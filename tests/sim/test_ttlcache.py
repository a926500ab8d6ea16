import random

import pytest
from cachefleet.sim.popularity import Bucket, zipf_buckets
from cachefleet.sim.ttlcache import (
    cold_misses,
    read_share,
    stale_read_rate,
    stale_reads,
    steady_miss_rate,
)

ONE_KEY = [Bucket(1.0, 1.0)]


def _simulated_miss_ratio(rate: float, ttl: float, reads: int, seed: int) -> float:
    """A single key read as a Poisson stream, cached for ``ttl`` after each miss."""
    rng = random.Random(seed)
    now, expires, misses = 0.0, -1.0, 0
    for _ in range(reads):
        now += rng.expovariate(rate)
        if now >= expires:
            misses += 1
            expires = now + ttl
    return misses / reads


@pytest.mark.parametrize(("rate", "ttl"), [(0.5, 2.0), (10.0, 0.3), (1.0, 10.0)])
def test_steady_miss_ratio_matches_a_simulated_ttl_cache(rate: float, ttl: float) -> None:
    simulated = _simulated_miss_ratio(rate, ttl, 200_000, seed=7)
    assert steady_miss_rate(ONE_KEY, rate, ttl) / rate == pytest.approx(simulated, rel=0.02)


def _integral(function, end: float, steps: int = 20_000) -> float:
    width = end / steps
    return sum(function((i + 0.5) * width) for i in range(steps)) * width


def test_cold_misses_integrate_the_cold_miss_rate() -> None:
    buckets = zipf_buckets(10_000, 0.9)
    rate, ttl = 500.0, 30.0

    def cold_rate(t: float) -> float:
        # The documented rate from empty, for comparison with the closed form.
        from math import exp

        total = 0.0
        for b in buckets:
            lam = rate * b.share
            total += b.count * lam * (exp(-lam * t) + (1 - exp(-lam * t)) / (1 + lam * ttl))
        return total

    assert cold_misses(buckets, rate, ttl, 60.0) == pytest.approx(
        _integral(cold_rate, 60.0), rel=1e-4
    )


def test_a_cold_cache_settles_to_the_steady_rate() -> None:
    buckets = zipf_buckets(1000, 1.0)
    rate, ttl = 1000.0, 60.0
    steady = steady_miss_rate(buckets, rate, ttl)
    late = cold_misses(buckets, rate, ttl, 1e5 + 1) - cold_misses(buckets, rate, ttl, 1e5)
    assert late == pytest.approx(steady, rel=1e-6)
    # The first instant, every read misses.
    assert cold_misses(buckets, rate, ttl, 1e-6) / 1e-6 == pytest.approx(rate, rel=1e-3)


def test_read_share_grows_from_nothing_to_everything() -> None:
    buckets = zipf_buckets(100_000, 0.9)
    shares = [read_share(buckets, 1e4, t) for t in (0.0, 1.0, 10.0, 100.0, 1e6)]
    assert shares[0] == 0.0
    assert shares == sorted(shares)
    assert shares[-1] == pytest.approx(1.0, abs=1e-6)


def test_stale_reads_integrate_the_stale_read_rate() -> None:
    buckets = zipf_buckets(5000, 1.0)
    total = stale_reads(buckets, 2000.0, 0.05, 300.0, 60.0)
    numeric = _integral(lambda t: stale_read_rate(buckets, 2000.0, 0.05, 300.0, 60.0, t), 6000.0)
    assert total == pytest.approx(numeric, rel=1e-3)
    assert stale_reads(buckets, 2000.0, 0.0, 300.0, 60.0) == 0.0  # nothing written, none stale
