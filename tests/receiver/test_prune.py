"""Idempotency keys older than --key-ttl are forgotten: at most once a minute over every
receiver on the database, at most a batch at a time, on the app's injected clock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from snoop.receiver.store import open_store
from tests.receiver.harness import execute, file, make_delta, open_api

T0 = 1_700_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _keys(url: str) -> set[str]:
    return {key for (key,) in execute(url, "SELECT idempotency_key FROM deltas")}


def test_old_keys_are_pruned_and_a_repeat_is_stored_again(store_url):
    clock = Clock(T0)
    with open_api(store_url, clock=clock, key_ttl=7 * DAY) as api:
        old = make_delta({"/a": file()})
        assert api.post(old, "old").json()["status"] == "stored"
        clock.now = T0 + 6 * DAY
        young = make_delta({"/b": file()}, workload_id="w2")
        assert api.post(young, "young").json()["status"] == "stored"
        assert _keys(store_url) == {"old", "young"}
        report = api.json("/v1/report", image="app:1")
        clock.now = T0 + 7 * DAY + 1
        assert api.post(make_delta({"/c": file()}), "new").json()["status"] == "stored"
        assert _keys(store_url) == {"young", "new"}
        assert api.metric("snoop_receiver_keys_pruned_total") == 1
        # Pruned: the same delta again is stored again, and the union does not change.
        assert api.post(old, "old").json()["status"] == "stored"
        assert api.post(young, "young").json()["status"] == "duplicate"
        again = api.json("/v1/report", image="app:1")
        assert again["file_details"].keys() == report["file_details"].keys() | {"/c"}
        assert again["file_details"]["/a"] == report["file_details"]["/a"]


def test_pruning_is_once_a_minute_over_every_receiver(store_url):
    url = store_url
    clocks = Clock(T0), Clock(T0)
    with open_api(url, clock=clocks[0], key_ttl=DAY) as first, \
            open_api(url, clock=clocks[1], key_ttl=DAY) as second:
        def post(api, at: float, key: str) -> None:
            clocks[api is second].now = at
            assert api.post(make_delta({f"/{key}": file()}), key).status_code == 200

        post(first, T0, "k0")  # the first pruning: nothing is old
        post(first, T0 + 30, "k1")
        post(second, T0 + 40, "k2")  # the first receiver pruned 40 s ago
        post(second, T0 + DAY + 35, "k3")  # prunes what came before T0 + 35
        assert _keys(url) == {"k2", "k3"}
        post(first, T0 + DAY + 50, "k4")  # k2 is old, but the second pruned 15 s ago
        assert _keys(url) == {"k2", "k3", "k4"}
        post(first, T0 + DAY + 110, "k5")
        assert _keys(url) == {"k3", "k4", "k5"}
        pruned = [api.metric("snoop_receiver_keys_pruned_total") for api in (first, second)]
        assert pruned == [1, 2]


def test_a_pruning_deletes_at_most_its_batch_oldest_first(store_url):
    store = open_store(store_url)
    try:
        for n in range(5):
            store.store_delta(make_delta({"/a": file()}), f"k{n}", f"h{n}", T0 + n)
        assert store.prune_keys(T0 + 10, now=T0 + 100, every=60, limit=2) == 2
        assert _keys(store_url) == {"k2", "k3", "k4"}
        assert store.prune_keys(T0 + 10, now=T0 + 120, every=60, limit=2) == 0  # too soon
        # A pruning "done" later than now is a clock ahead, not a reason to wait.
        assert store.prune_keys(T0 + 10, now=T0 + 50, every=60, limit=2) == 2
        assert _keys(store_url) == {"k4"}
    finally:
        store.close()


def test_receivers_pruning_at_once_prune_once(postgres_server):
    url = postgres_server.new_database()
    stores = [open_store(url) for _ in range(4)]
    try:
        for n in range(10):
            stores[0].store_delta(make_delta({"/a": file()}), f"k{n}", f"h{n}", T0)
        barrier = threading.Barrier(len(stores))

        def prune(store) -> int:
            barrier.wait()
            return store.prune_keys(T0 + 10, now=T0 + 100, every=60, limit=100)

        with ThreadPoolExecutor(len(stores)) as pool:
            assert sorted(pool.map(prune, stores)) == [0, 0, 0, 10]
        assert _keys(url) == set()
    finally:
        for store in stores:
            store.close()
