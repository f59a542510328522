"""`tasks.export.lerobot`: the LeRobot v3.0 layout, read back with pyarrow and pandas (and with
Hugging Face `datasets` where it is installed; `make lerobot-check` loads it with LeRobot itself)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import tasks.rlds as shards
from tasks.export.lerobot import ACTION_NAMES, FPS, STATE_NAMES, export_lerobot
from tasks.rlds.reader import flatten_observation
from tests.tasks.rlds.test_shards import make_song


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    songs = {"song_a": make_song(np.random.default_rng(0), "song_a", lengths=(7, 5, 9)),
             "song_b": make_song(np.random.default_rng(1), "song_b", lengths=(4, 6, 3))}
    for song_id, episodes in songs.items():
        shards.write_song_dataset(root / "shards", song_id, episodes)
    # a tiny file size: the frames spread over several data files
    info = export_lerobot([root / "shards/song_a", root / "shards/song_b"], root / "lerobot",
                          titles={"song_a": "Song A"}, data_file_mb=0.02)
    return root / "lerobot", info, [e for s in songs.values() for e in s]


def test_info_json_describes_the_features(exported):
    out, info, episodes = exported
    assert json.loads((out / "meta/info.json").read_text()) == info
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS == 20 and info["robot_type"]
    assert info["total_episodes"] == 6 and info["total_frames"] == sum(e.n_steps for e in episodes) == 34
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [1144] and len(feats["observation.state"]["names"]) == 1144
    assert feats["action"] == {"dtype": "float32", "shape": [39], "names": list(ACTION_NAMES)}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert feats[key]["shape"] == [1]


def test_frames_hold_the_stored_steps_in_order(exported):
    out, info, episodes = exported
    files = sorted((out / "data").glob("chunk-*/file-*.parquet"))
    assert len(files) > 1  # split by size
    table = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    assert list(table["index"]) == list(range(info["total_frames"]))
    state = np.stack(table["observation.state"].to_numpy())
    action = np.stack(table["action"].to_numpy())
    start = 0
    for i, ep in enumerate(episodes):
        rows = table.iloc[start:start + ep.n_steps]
        assert set(rows["episode_index"]) == {i} and list(rows["frame_index"]) == list(range(ep.n_steps))
        np.testing.assert_allclose(rows["timestamp"], np.arange(ep.n_steps) / FPS, atol=1e-6)
        np.testing.assert_array_equal(state[start:start + ep.n_steps], flatten_observation(ep.steps["observation"]))
        np.testing.assert_array_equal(action[start:start + ep.n_steps], ep.steps["action"])
        assert list(rows["next.done"]) == [False] * (ep.n_steps - 1) + [True]
        start += ep.n_steps


def test_episode_and_task_metadata(exported):
    out, info, episodes = exported
    meta = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pandas()
    assert list(meta["episode_index"]) == list(range(6)) and list(meta["length"]) == [e.n_steps for e in episodes]
    assert list(meta["dataset_to_index"] - meta["dataset_from_index"]) == list(meta["length"])
    assert meta["dataset_from_index"].iloc[0] == 0 and meta["dataset_to_index"].iloc[-1] == info["total_frames"]
    for _, row in meta.iterrows():  # each episode's frames are in the data file it names
        frames = pq.read_table(out / f"data/chunk-{row['data/chunk_index']:03d}/file-{row['data/file_index']:03d}"
                               ".parquet").to_pandas()
        assert set(frames.loc[frames["episode_index"] == row["episode_index"], "index"]) == set(
            range(row["dataset_from_index"], row["dataset_to_index"]))
    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert tasks.index.name == "task" and list(tasks["task_index"]) == list(range(len(tasks)))
    assert "play Song A, chunk 0" in tasks.index and "play song_b, chunk 1" in tasks.index
    assert info["total_tasks"] == len(tasks) == 4  # two chunks of two songs
    assert list(meta["tasks"].iloc[0]) == ["play Song A, chunk 0"]


def test_stats_match_the_frames(exported):
    out, _, episodes = exported
    stats = json.loads((out / "meta/stats.json").read_text())
    action = np.concatenate([e.steps["action"] for e in episodes])
    np.testing.assert_allclose(stats["action"]["mean"], action.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], action.std(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["min"], action.min(0))
    assert stats["observation.state"]["count"] == [34] and len(stats["observation.state"]["max"]) == len(STATE_NAMES)


def test_huggingface_datasets_reads_the_frames(exported, tmp_path):
    """LeRobot loads its data files with `datasets.load_dataset("parquet", ...)`: the same call here."""
    import importlib.util

    spec = importlib.util.find_spec("datasets")  # without it, the repository's datasets/ folder (a namespace)
    if spec is None or spec.origin is None:
        # No `datasets` release fits our pins (fsspec 2026.9.0 with pyarrow 21 / numpy < 2); `make lerobot-check`
        # runs this same read in LeRobot's own virtualenv.
        pytest.skip("Hugging Face `datasets` is not installed (no release fits requirements/lock.txt)")
    import datasets

    out, info, episodes = exported
    ds = datasets.load_dataset("parquet", data_files=str(out / "data/*/*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == info["total_frames"]
    feats = ds.features
    assert feats["observation.state"].length == 1144 and feats["observation.state"].feature.dtype == "float32"
    assert feats["action"].length == 39 and feats["index"].dtype == "int64"
    ds = ds.with_format("numpy").sort("index")
    first = episodes[0]
    np.testing.assert_array_equal(ds["action"][: first.n_steps], first.steps["action"])
    np.testing.assert_array_equal(ds["episode_index"][-1], info["total_episodes"] - 1)


def test_action_names_are_the_envs_actuators():
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.env import make_env

    env = make_env(make_chunks(load_song("robopianist:CMajorScaleTwoHands"))[0])
    names = [a.name for hand in (env.task.right_hand, env.task.left_hand) for a in hand.actuators]
    prefixed = [n if n.startswith(("rh_", "lh_")) else f"{side}_{n}"
                for side, hand in (("rh", names[:19]), ("lh", names[19:])) for n in hand]
    assert list(ACTION_NAMES) == prefixed + ["sustain"] and env.action_spec().shape == (39,)
