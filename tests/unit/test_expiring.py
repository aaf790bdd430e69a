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
