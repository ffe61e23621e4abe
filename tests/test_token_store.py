"""The IMDSv2 token store: bounded, expiring, and a PUT flood never evicts a token in use."""

from __future__ import annotations

from rolesanywhere_signer.imds import TokenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_put_flood_never_evicts_a_used_token() -> None:
    store = TokenStore(limit=100)
    used = store.issue(21600)
    assert store.valid(used)
    fresh_victim = store.issue(21600)
    for _ in range(10_000):
        store.issue(21600)
    assert store.valid(used)  # still there after 100 times the store's size in PUTs
    assert not store.valid(fresh_victim)  # never-used tokens go first
    assert len(store) <= 100 + 1


def test_used_tokens_have_their_own_bound_least_recently_used_first() -> None:
    store = TokenStore(limit=10, used_limit=3)
    tokens = [store.issue(600) for _ in range(4)]
    for t in tokens[:3]:
        assert store.valid(t)
    assert store.valid(tokens[0])  # refreshes its place: tokens[1] is now the least recent
    assert store.valid(tokens[3])  # a fourth used token pushes out the least recently used
    assert not store.valid(tokens[1])
    assert store.valid(tokens[0]) and store.valid(tokens[2]) and store.valid(tokens[3])


def test_expiry_and_bounded_bookkeeping() -> None:
    clock = Clock()
    store = TokenStore(limit=50, monotonic=clock)
    short = [store.issue(1) for _ in range(20)]
    long = store.issue(600)
    assert store.valid(long)
    clock.now += 1
    assert not any(store.valid(t) for t in short)
    store.issue(600)  # each PUT drops what has expired
    assert len(store) == 2
    for i in range(20_000):  # churn: evicted tokens leave their buckets at once
        store.issue(1 + i % 5)
        if i % 1000 == 0:
            clock.now += 3
        if i % 997 == 0:
            bucketed, seconds = store.bookkeeping()
            assert bucketed == len(store)
            assert seconds <= 600 + 2  # one heap entry per second of the longest TTL, at most
    assert len(store) <= 50 + 1
    assert store.valid(long)


def test_bookkeeping_stays_bounded_under_random_ttls_and_gets() -> None:
    clock = Clock()
    store = TokenStore(limit=64, used_limit=16, monotonic=clock)
    import random

    rng = random.Random(7)
    tokens: list[str] = []
    for i in range(30_000):
        tokens.append(store.issue(rng.randint(1, 21600)))
        if rng.random() < 0.3:
            store.valid(rng.choice(tokens[-200:]))  # used tokens churn through their own bound
        if i % 50 == 0:
            clock.now += rng.random() * 5
        if i % 1000 == 0:
            bucketed, seconds = store.bookkeeping()
            assert bucketed == len(store) <= 64 + 16
            assert seconds <= 21600 + 2
    clock.now += 21601  # everything has expired: the next PUT empties every bucket
    store.issue(1)
    assert len(store) == 1
    assert store.bookkeeping() == (1, 1)


def test_a_get_with_an_expired_fresh_token_forgets_it() -> None:
    clock = Clock()
    store = TokenStore(monotonic=clock)
    t = store.issue(2)
    clock.now += 2
    assert not store.valid(t)
    assert len(store) == 0 and store.bookkeeping()[0] == 0


def test_expired_used_token_is_refused() -> None:
    clock = Clock()
    store = TokenStore(monotonic=clock)
    t = store.issue(5)
    assert store.valid(t)
    clock.now += 5
    assert not store.valid(t)
    assert not store.valid(None) and not store.valid("")
