import math

import pytest
from cachefleet.sim.popularity import EXACT_HEAD, zipf_buckets


@pytest.mark.parametrize(("keys", "s"), [(1, 0.9), (50, 1.0), (10_000_000, 0.9), (1e9, 1.3)])
def test_buckets_cover_every_key_and_all_traffic(keys: float, s: float) -> None:
    buckets = zipf_buckets(keys, s)
    assert sum(b.count for b in buckets) == math.floor(keys)
    assert sum(b.count * b.share for b in buckets) == pytest.approx(1.0, abs=1e-12)
    assert len(buckets) < 300  # the page evaluates them hundreds of times per slider move


def test_shares_fall_with_rank_as_the_zipf_law_says() -> None:
    buckets = zipf_buckets(1_000_000, 1.0)
    shares = [b.share for b in buckets]
    assert shares == sorted(shares, reverse=True)
    # The head is exact: rank r gets 1/r of rank 1's share.
    for rank in range(1, EXACT_HEAD + 1):
        assert buckets[rank - 1].count == 1
        assert buckets[rank - 1].share == pytest.approx(buckets[0].share / rank, rel=1e-12)


def test_the_summary_matches_exact_sums() -> None:
    keys, s = 200_000, 0.9
    exact = [r**-s for r in range(1, keys + 1)]
    total = math.fsum(exact)
    buckets = zipf_buckets(keys, s)
    # The top key's share, and the traffic on the top 10% of keys, within 0.1%.
    assert buckets[0].share == pytest.approx(exact[0] / total, rel=1e-3)
    top = keys // 10
    covered, summary = 0, 0.0
    for bucket in buckets:
        if covered + bucket.count > top:
            summary += (top - covered) * bucket.share
            break
        covered += int(bucket.count)
        summary += bucket.count * bucket.share
    assert summary == pytest.approx(math.fsum(exact[:top]) / total, rel=1e-3)


def test_exponent_one_is_continuous() -> None:
    near = zipf_buckets(1e6, 1.0 + 1e-7)
    at = zipf_buckets(1e6, 1.0)
    assert [b.share for b in near] == pytest.approx([b.share for b in at], rel=1e-5)
