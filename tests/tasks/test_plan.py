"""`tasks.plan.collection_plan` against a tiny real collection (ik specialist, the real collection
steps): what runs and what is reused as the steps complete, its CPU sum, its disk, catalog rows."""

from __future__ import annotations

import json
from dataclasses import replace

import pretty_midi
import pytest

from envs.music.catalog import row_for_song
from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from tasks.collect import CollectConfig, prepare_song, rollout_chunk_step, train_chunk, write_song
from tasks.names import SPECIALIST_KINDS
from tasks.plan import MEASURED, collection_plan
from tasks.rlds import read_manifest

COSTS = {"flow_s": 10.0, "prepare": {"task_s": 1.0, "per_step_s": 0.0},
         "train": {"ik": {"task_s": 2.0, "per_step_s": 0.01, "profiles": ("smoke",)}},
         "rollout": {"ik": {"task_s": 3.0, "per_step_s": 0.001, "measured": True}},
         "write": {"task_s": 0.5, "per_step_s": 0.0001}, "bytes_per_step": 100.0}


def _song(path, pitches, gap=0.4):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(velocity=80, pitch=p, start=gap * i, end=gap * i + 0.35)
                    for i, p in enumerate(pitches)]
    midi.instruments.append(piano)
    midi.write(str(path))
    return str(path)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    a = _song(root / "a.mid", [60, 62, 64, 65])
    b = _song(root / "b.mid", [48, 52, 55, 60, 64, 67])
    bad = root / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")  # a header cut short
    config = CollectConfig(songs=(a, b, str(bad)), specialist="ik", n_rollouts=2, workers=1, parallel_chunks=1,
                           register=False, work_dir=str(root / "work"), shards_dir=str(root / "shards"),
                           specialists_dir=str(root / "specialists"))
    return root, config


def _by_ref(plan):
    return {s["ref"]: s for s in plan["songs"]}


def test_plan_of_a_fresh_collection_runs_everything_and_names_the_broken_song(collection):
    root, config = collection
    plan = collection_plan(config, catalog_dir=None, costs=COSTS)
    a, b, bad = (_by_ref(plan)[ref] for ref in config.songs)
    assert bad["status"] == "unloadable" and "broken.mid" in bad["error"]
    steps = {ref: [c.n_steps for c in make_chunks(load_song(ref))] for ref in config.songs[:2]}
    for entry, ref in ((a, config.songs[0]), (b, config.songs[1])):
        assert entry["status"] == "run" and entry["chunks"] == len(steps[ref]) == entry["train"] == entry["rollout"]
        assert entry["steps"] == sum(steps[ref])
    totals, est = plan["totals"], plan["estimate"]
    n_chunks, n_steps = a["chunks"] + b["chunks"], a["steps"] + b["steps"]
    assert totals["unloadable"] == 1 and totals["chunks"] == n_chunks and totals["episodes"] == 2 * n_chunks
    assert totals["tasks"] == {"train": {"run": n_chunks, "reuse": 0}, "rollout": {"run": n_chunks, "reuse": 0},
                               "write": {"run": 2, "reuse": 0}}
    # the priced sum, by hand: ik trains over the chunk's own steps
    expected = (10 + 2 * 1 + n_chunks * 2 + 0.01 * n_steps + n_chunks * 3 + 0.001 * n_steps * 2
                + 2 * 0.5 + 0.0001 * n_steps * 2)
    assert est["cpu_hours"] == pytest.approx(expected / 3600, abs=1e-3)
    assert est["disk_bytes_new"] == pytest.approx(100 * n_steps * 2 + 2 * 40_000)
    assert not (root / "work").exists()  # the plan ran nothing


def test_plan_reuses_what_the_steps_completed(collection):
    root, config = collection
    ref_a, ref_b = config.songs[:2]
    prepared = prepare_song(ref_a, config.work_dir)
    works = []
    for chunk in prepared["chunks"]:
        works.append(str(root / "work" / prepared["song_id"] / chunk["chunk_id"]))
        train_chunk(chunk["file"], works[-1], config)
        rollout_chunk_step(prepared["song_id"], chunk["file"], works[-1], config)
    write_song(prepared["song_id"], works, [c["chunk_id"] for c in prepared["chunks"]], config)
    prepare_song(ref_b, config.work_dir)  # b: its chunk files written, nothing else

    plan = collection_plan(config, catalog_dir=None, costs=COSTS)
    a, b = _by_ref(plan)[ref_a], _by_ref(plan)[ref_b]
    assert (a["status"], a["train"], a["rollout"]) == ("reuse", 0, 0)
    assert (b["status"], b["train"], b["rollout"]) == ("run", b["chunks"], b["chunks"])
    tasks = plan["totals"]["tasks"]
    assert tasks["train"]["reuse"] == a["chunks"] and tasks["rollout"]["reuse"] == a["chunks"]
    assert tasks["write"] == {"run": 1, "reuse": 1}
    assert plan["totals"]["new_stored_steps"] == 2 * b["steps"]
    # more rollouts: the specialists are reused, the rollouts and the shards are not
    more = collection_plan(replace(config, n_rollouts=3), catalog_dir=None, costs=COSTS)
    a3 = _by_ref(more)[ref_a]
    assert (a3["status"], a3["train"], a3["rollout"]) == ("run", 0, a3["chunks"])
    # the shipped per-step costs price what is left; its disk is the measured bytes per stored step
    shipped = collection_plan(config, catalog_dir=None)
    assert shipped["estimate"]["cpu_hours"] > 0 and shipped["estimate"]["measured"]
    written = read_manifest(root / "shards" / prepared["song_id"])
    assert MEASURED["bytes_per_step"] > 0 and written.n_steps == 2 * a["steps"]


def test_plan_takes_unprepared_songs_from_the_catalog(collection, tmp_path):
    _, config = collection
    song = load_song(config.songs[1])
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    row = row_for_song(song).as_dict()
    (catalog / "midi.jsonl").write_text(json.dumps({**row, "ref": "catalog:b"}) + "\n"
                                        + json.dumps({**row, "ref": "catalog:x", "id": "0123abcd",
                                                      "playable": False, "reason": "too many keys"}) + "\n")
    fresh = replace(config, songs=("catalog:b", "catalog:x"), work_dir=str(tmp_path / "work"))
    plan = collection_plan(fresh, catalog_dir=catalog, costs=COSTS)
    b, x = plan["songs"]
    assert b["from"] == "catalog" and b["song_id"] == song.song_id
    assert (b["chunks"], b["steps"]) == (len(make_chunks(song)), sum(c.n_steps for c in make_chunks(song)))
    assert x["status"] == "unloadable" and "too many keys" in x["error"]


@pytest.mark.parametrize("kind", SPECIALIST_KINDS)
def test_every_specialist_kind_is_priced_by_the_shipped_costs(collection, kind, tmp_path):
    """`pianoset collect --plan --specialist K` works for every kind the collection trains."""
    _, config = collection
    config = replace(config, specialist=kind, work_dir=str(tmp_path / "work"))  # nothing done yet
    plan = collection_plan(config, catalog_dir=None)
    assert plan["estimate"]["cpu_hours"] > 0 and plan["totals"]["tasks"]["train"]["run"] > 0
    if kind in ("ik", "mpc"):  # planned over the chunk's own steps, not the budget's training steps
        cost = MEASURED["train"][kind]
        steps = [c.n_steps for ref in config.songs[:2] for c in make_chunks(load_song(ref))]
        expected = sum(cost["task_s"] + cost["per_step_s"] * n for n in steps)
        assert plan["estimate"]["cpu_s_by_stage"]["train"] == pytest.approx(expected, abs=0.1)
