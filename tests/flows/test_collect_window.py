"""The collection flow submits songs in a bounded window (`flows.collect.in_flight_limit`): the
real flow and its temporary Prefect server, its four tasks replaced by ones that return at once
(benchmarks/collect_scale.py's stubs) and record, when a song's first training starts, how many
chunks of earlier songs were submitted and not yet resolved (no status record yet)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from benchmarks.collect_scale import stub_tasks


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_songs_are_submitted_in_a_bounded_window_and_resolved_in_order(prefect_api, tmp_path, monkeypatch):
    import flows.collect as flow_module
    from tasks.collect import CollectConfig

    chunks_of = {f"sim:{i:03d}": n for i, n in enumerate([3, 1, 2, 5, 1, 1, 9, 2, 2, 1, 3, 1])}
    order = list(chunks_of)
    stubs = stub_tasks(chunks_of)
    work = tmp_path / "work"
    seen: dict[str, int] = {}
    lock = threading.Lock()
    real_train = stubs["train_chunk_task"].fn

    def train(chunk_file, chunk_work, config):
        song = chunk_file.split("/")[2].replace("_", ":", 1)
        with lock:
            if song not in seen:  # chunks of the earlier songs not resolved yet
                earlier = order[: order.index(song)]
                seen[song] = sum(chunks_of[s] for s in earlier
                                 if not (work / "status" / f"{s.replace(':', '_')}.json").exists())
        return real_train(chunk_file, chunk_work, config)

    from prefect import task
    from prefect.cache_policies import NONE

    stubs["train_chunk_task"] = task(train, name="train-specialist", cache_policy=NONE)
    for name, stub in stubs.items():
        monkeypatch.setattr(flow_module, name, stub)
    config = CollectConfig(songs=tuple(order), specialist="ik", n_rollouts=1, workers=1, parallel_chunks=1,
                           register=False, work_dir=str(work), shards_dir=str(tmp_path / "shards"),
                           specialists_dir=str(tmp_path / "specialists"))
    limit = flow_module.in_flight_limit(config)
    assert limit == 4
    summary = flow_module.run_collection(config)
    assert summary["counts"]["done"] == len(order) and summary["tasks_run"]["train"] == sum(chunks_of.values())
    assert set(seen) == set(order)
    for song, unresolved in seen.items():
        # a song goes in with the earlier ones' unresolved chunks; one bigger than the window goes alone
        assert unresolved + chunks_of[song] <= limit or unresolved == 0, (song, unresolved)
    assert seen["sim:006"] == 0  # 9 chunks: more than the window, so nothing else is in flight
    assert list(summary["songs"]) == order  # resolved oldest first
    assert all(Path(work / "status" / f"{s.replace(':', '_')}.json").exists() for s in order)
