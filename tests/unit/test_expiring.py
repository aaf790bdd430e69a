"""The expiring cache behind the token, URL and membership caches."""

from blobgate.expiring import ExpiringCache


def test_entries_expire_when_their_value_says() -> None:
    now = [100.0]
    cache: ExpiringCache[str, float] = ExpiringCache(10, lambda v: v, lambda: now[0])
    cache.put("a", 105.0)
    cache.put("b", 200.0)
    assert cache.get("a") == 105.0
    now[0] = 105.0
    assert cache.get("a") is None  # expiry is exclusive
    assert cache.peek("b") == 200.0
    assert (cache.hits, cache.misses) == (1, 1)  # peek counts nothing
    assert len(cache) == 1  # the expired entry was dropped on lookup


def test_a_full_cache_drops_its_oldest_entry_and_counts_it() -> None:
    cache: ExpiringCache[int, float] = ExpiringCache(3, lambda v: v, lambda: 0.0)
    for key in range(3):
        cache.put(key, 1.0)
    cache.put(0, 1.0)  # refreshed: now the newest
    cache.put(3, 1.0)
    assert cache.get(1) is None
    assert [cache.get(k) for k in (0, 2, 3)] == [1.0, 1.0, 1.0]
    assert cache.evictions == 1
    assert len(cache) == 3
    cache.pop(0)
    cache.clear()
    assert len(cache) == 0


def test_a_weighed_cache_keeps_its_entries_within_max_weight() -> None:
    cache: ExpiringCache[str, str] = ExpiringCache(
        100, lambda _v: float("inf"), weigh=lambda key, value: len(key) + len(value),
        max_weight=100)
    for i in range(10):
        cache.put(f"k{i}", "x" * 28)  # 30 each: three fit
    assert len(cache) == 3
    assert cache.weight == 90
    assert [cache.peek(f"k{i}") is not None for i in (6, 7, 8, 9)] == [False, True, True, True]
    assert cache.evictions == 7
    cache.put("k9", "y")  # replacing an entry gives its weight back
    assert cache.weight == 60 + 3
    cache.pop("k8")
    assert cache.weight == 33
    cache.clear()
    assert cache.weight == 0
    assert len(cache) == 0
