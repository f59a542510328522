"""Dataset statistics (RP1M Figure 4) on two hand-built songs with known answers.

Every episode has 4 steps; only the goal's first 88 entries and the pressed
keys are hand-set (the rest comes from `make_episode`). Key indices: A0 = 0,
A#0 = 1, C4 = 39, C#4 = 40, C8 = 87 (black: A#0, C#4).

song_a chunk 0 (goal C4 at steps 0-1, C#4 at steps 2-3: 4 active key-steps)
    seed 0 presses exactly the goal                          F1 1.0
    seed 1 presses C4 at steps 0-1 only                      F1 (1+1+0+0)/4 = 0.5
song_a chunk 1 (goal A0 + C8 at every step: 8 active key-steps)
    presses A0 at 0,1,3, C8 at 0-3, A#0 at 2 (wrong)         F1 (1+1+0.5+1)/4 = 0.875
song_b chunk 0 (goal empty at step 0, C#4 at steps 1-3: 3 active key-steps)
    presses nothing                                          F1 (1+0+0+0)/4 = 0.25
"""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest

import tasks.rlds as shards
from envs.piano.metrics import key_press_metrics
from tasks import stats
from tasks.rlds import Episode
from tests.tasks.rlds.test_shards import make_episode

A0, A_SHARP0, C4, C_SHARP4, C8 = 0, 1, 39, 40, 87
T = 4


def hand_episode(song_id: str, chunk_index: int, seed: int, goal_keys, pressed_keys) -> Episode:
    """An episode whose goal/pressed keys are {step: [keys]}; lookahead goal
    entries are set too (they must not be counted)."""
    ep = make_episode(np.random.default_rng(seed), T, song_id=song_id, chunk_index=chunk_index, seed=seed)
    goal = np.zeros((T, 11 * 88), dtype=bool)
    goal[:, 88 + 5] = True  # lookahead step 1, key 5: not an active key of this step
    pressed = np.zeros((T, 88), dtype=bool)
    for step, keys in goal_keys.items():
        goal[step, keys] = True
    for step, keys in pressed_keys.items():
        pressed[step, keys] = True
    ep.steps["observation"]["piano_goal"] = goal
    ep.steps["pressed_keys"] = pressed
    ep.metadata.update(key_press_metrics(goal=goal[:, :88], pressed=pressed).as_dict())
    return ep


SONG_A_CHUNK0_GOAL = {0: [C4], 1: [C4], 2: [C_SHARP4], 3: [C_SHARP4]}
SONGS = {
    "song_a": [
        hand_episode("song_a", 0, 0, SONG_A_CHUNK0_GOAL, SONG_A_CHUNK0_GOAL),
        hand_episode("song_a", 0, 1, SONG_A_CHUNK0_GOAL, {0: [C4], 1: [C4]}),
        hand_episode(
            "song_a", 1, 2, {t: [A0, C8] for t in range(T)}, {0: [A0, C8], 1: [A0, C8], 2: [C8, A_SHARP0], 3: [A0, C8]}
        ),
    ],
    "song_b": [hand_episode("song_b", 0, 3, {1: [C_SHARP4], 2: [C_SHARP4], 3: [C_SHARP4]}, {})],
}
EPISODE_F1 = [1.0, 0.5, 0.875, 0.25]


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("shards")
    for song_id, episodes in SONGS.items():
        shards.write_song_dataset(out_dir, song_id, episodes)
    (out_dir / "song_half_written").mkdir()  # no manifest: skipped
    return out_dir


@pytest.fixture(scope="module")
def dataset_stats(shards_dir):
    return stats.compute_stats(shards_dir)


def test_hand_built_f1_values():
    assert [ep.metadata["f1"] for eps in SONGS.values() for ep in eps] == pytest.approx(EPISODE_F1)


def test_key_names_and_colours():
    assert len(stats.KEY_NAMES) == 88
    assert stats.KEY_NAMES[:4] == ("A0", "A#0", "B0", "C1")
    assert (stats.KEY_NAMES[C4], stats.KEY_NAMES[C_SHARP4], stats.KEY_NAMES[-1]) == ("C4", "C#4", "C8")
    assert int(stats.IS_BLACK_KEY.sum()) == 36


def test_episode_counts_held_steps_and_onsets():
    pressed = np.zeros((5, 88), dtype=bool)
    pressed[[0, 1, 3, 4], C4] = True  # down, held, up, down, held: 4 steps, 2 onsets
    pressed[2, C8] = True
    counts = stats.episode_counts(goal=pressed, pressed=pressed)
    assert counts.pressed_key_steps[C4] == 4 and counts.press_onsets[C4] == 2
    assert counts.press_onsets[C8] == 1 and counts.press_onsets.sum() == 3
    with pytest.raises(ValueError, match=r"\(T, 88\)"):
        stats.episode_counts(goal=np.zeros((5, 968), bool), pressed=pressed)


def test_counts_and_sizes(dataset_stats):
    s = dataset_stats
    assert (s.n_songs, s.n_chunks, s.n_episodes, s.n_steps) == (2, 3, 4, 16)
    assert [song.song_id for song in s.songs] == ["song_a", "song_b"]  # the half-written folder is skipped
    expected_steps = {C4: 2 + 2, C_SHARP4: 2, A0: 3, C8: 4, A_SHARP0: 1}
    expected_onsets = {C4: 1 + 1, C_SHARP4: 1, A0: 2, C8: 1, A_SHARP0: 1}
    expected_goal = {C4: 2, C_SHARP4: 2 + 3, A0: 4, C8: 4}  # chunk 0 of song_a counted once
    for name, expected in [
        ("pressed_key_steps", expected_steps),
        ("press_onsets", expected_onsets),
        ("goal_key_steps", expected_goal),
    ]:
        want = np.zeros(88, dtype=int)
        want[list(expected)] = list(expected.values())
        np.testing.assert_array_equal(getattr(s, name), want, err_msg=name)
    assert s.white_share == pytest.approx(11 / 14)
    assert s.onset_white_share == pytest.approx(5 / 7)
    assert s.active_keys_per_song == {"song_a": 4 + 8, "song_b": 3}
    assert s.pieces_in_active_keys_range == 0.0
    assert s.goal_mismatches == 0


def test_f1_stats(dataset_stats):
    s = dataset_stats
    assert s.specialist_mean_f1 == pytest.approx({"sac-song_a-0": 0.75, "sac-song_a-1": 0.875, "sac-song_b-0": 0.25})
    assert s.specialists_f1_above(0.75) == pytest.approx(1 / 3)  # strict: 0.75 is not above 0.75
    assert s.specialists_f1_above(0.5) == pytest.approx(2 / 3)
    assert s.episodes_f1_above_fraction(0.75) == 0.5 and s.episodes_f1_above_fraction(0.5) == 0.5
    assert s.episode_f1_mean == pytest.approx(np.mean(EPISODE_F1))
    assert s.episode_f1_std == pytest.approx(np.std(EPISODE_F1))
    assert (s.episode_f1_min, s.episode_f1_max) == (0.25, 1.0)
    assert sum(s.episode_f1_counts) == 4
    assert {k for k, c in enumerate(s.episode_f1_counts) if c} == {25, 50, 87, 99}  # 1.0 in the last bin
    assert [song.mean_f1 for song in s.songs] == pytest.approx([(1.0 + 0.5 + 0.875) / 3, 0.25])


def test_song_filter(shards_dir):
    only_b = stats.compute_stats(shards_dir, songs=["song_b"])
    assert (only_b.n_songs, only_b.n_episodes, only_b.n_steps) == (1, 1, 4)
    assert only_b.active_keys_per_song == {"song_b": 3}
    assert sum(only_b.pressed_key_steps) == 0 and only_b.white_share is None
    with pytest.raises(stats.StatsError, match=r"\['song_z', 'song_half_written'\] are not complete song folders"):
        stats.compute_stats(shards_dir, songs=["song_a", "song_z", "song_half_written"])


def test_empty_or_missing_shards_dir(tmp_path):
    with pytest.raises(stats.StatsError, match=f"{tmp_path}: no complete song folders"):
        stats.compute_stats(tmp_path)
    with pytest.raises(stats.StatsError, match=f"{tmp_path / 'nope'}: no such shards directory"):
        stats.compute_stats(tmp_path / "nope")


def test_goal_mismatch_within_a_chunk_is_counted(tmp_path):
    episodes = [
        hand_episode("song_c", 0, 0, {0: [C4]}, {0: [C4]}),
        hand_episode("song_c", 0, 1, {0: [C4], 1: [C4]}, {}),  # same chunk, another goal
    ]
    shards.write_song_dataset(tmp_path, "song_c", episodes)
    result = stats.compute_stats(tmp_path)
    assert result.goal_mismatches == 1
    assert result.active_keys_per_song == {"song_c": 1}  # the first rollout's goal


def test_write_reports(dataset_stats, tmp_path):
    out_dir = tmp_path / "reports" / "stats"
    paths = stats.write_reports(dataset_stats, out_dir)
    assert sorted(p.name for p in paths) == sorted(stats.REPORT_FILES)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(stats.REPORT_FILES)  # no temp files left
    for name in ("pressed_keys.png", "active_keys_per_piece.png", "f1_histogram.png"):
        image = matplotlib.image.imread(out_dir / name)
        assert image.shape[0] >= 300 and image.shape[1] >= 500, name
        assert image[..., :3].std() > 0.05, f"{name} is blank"

    data = json.loads((out_dir / "stats.json").read_text())
    assert stats.DatasetStats.from_json(data) == dataset_stats
    assert (data["n_songs"], data["n_episodes"], data["n_steps"]) == (2, 4, 16)
    assert data["white_share"] == pytest.approx(11 / 14)
    assert data["active_keys_per_song"] == {"song_a": 12, "song_b": 3}
    assert data["specialists_f1_above"] == pytest.approx({"0.75": 1 / 3, "0.5": 2 / 3})
    assert dict(zip(data["keys"]["names"], data["keys"]["pressed_key_steps"]))["C8"] == 4
    assert data["episode_f1"]["mean"] == pytest.approx(np.mean(EPISODE_F1))

    markdown = (out_dir / "stats.md").read_text()
    assert "78.6%" in markdown and "33.3%" in markdown and "pressed_keys.png" in markdown

    stats.write_reports(dataset_stats, out_dir)  # overwrites in place
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(stats.REPORT_FILES)
