"""Multi-song evaluation in the real piano env: the batched lockstep loop against an
obvious one-episode-at-a-time loop, observation windows and action queues, records."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from agents.common.policy import PolicySpec
from envs.music.chunks import make_chunks, save_chunk
from envs.music.songs import load_song
from envs.piano.config import EnvConfig
from envs.piano.env import flatten_observation, make_env
from envs.piano.metrics import key_press_metrics
from tasks.policy_eval import (
    ENV_POOL,
    EvalConfig,
    EvalItem,
    evaluate_episodes,
    load_key_arrays,
    read_records,
    recompute_episodes,
    save_records,
    summarize,
)

ENV_CONFIG = EnvConfig(physics_timestep=0.002).with_reward(fingering="none")  # the random policy presses keys at it
OBS_DIM, ACTION_DIM = 1144, 39
SONGS = ("robopianist:CMajorScaleTwoHands", "robopianist:TwinkleTwinkleRousseau")


class WindowPolicy:
    """A deterministic policy whose actions depend on every observation of its window
    (a fixed random linear map, row by row so the batch size cannot change a bit of
    it); it records every window it is given."""

    name = "test-window"

    def __init__(self, spec: PolicySpec, low: np.ndarray, high: np.ndarray, seed: int = 0):
        self.spec = spec
        rng = np.random.default_rng(seed)
        self.weights = (rng.normal(size=(spec.obs_horizon * spec.obs_dim, spec.action_horizon * spec.action_dim))
                        * 0.05).astype(np.float32)
        self.mid, self.half = (high + low) / 2, (high - low) / 2
        self.calls: list[np.ndarray] = []
        self.resets: list[int] = []

    def reset(self, batch_size: int) -> None:
        self.resets.append(batch_size)

    def predict_chunk(self, obs, key):
        obs = np.asarray(obs, np.float32)
        self.calls.append(obs.copy())
        out = np.empty((len(obs), self.spec.action_horizon, self.spec.action_dim), np.float32)
        for row in range(len(obs)):
            z = np.tanh(obs[row].reshape(-1) @ self.weights)
            out[row] = (self.mid + 0.8 * self.half * z.reshape(self.spec.action_horizon, -1)).astype(np.float32)
        return out


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    files = []
    for ref in SONGS:
        chunk = replace(make_chunks(load_song(ref))[0], n_steps=20)
        path = root / f"{chunk.chunk_id}.json"
        save_chunk(chunk, path)
        files.append((ref, chunk, path))
    return files


@pytest.fixture(scope="module")
def action_bounds(chunk_files):
    env_key, env = ENV_POOL.acquire(chunk_files[1][1], ENV_CONFIG)  # pooled: the evaluations reuse it
    spec = env.action_spec()
    ENV_POOL.release(env_key, env)
    return spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)


def _items(chunk_files):
    """Three episodes of different lengths, two on the same chunk."""
    (ref_a, chunk_a, file_a), (ref_b, chunk_b, file_b) = chunk_files
    return [
        EvalItem("easy_ood", ref_a, chunk_a.song_id, chunk_a.chunk_id, 0, str(file_a), 12, 0),
        EvalItem("easy_ood", ref_b, chunk_b.song_id, chunk_b.chunk_id, 0, str(file_b), 20, 0),
        EvalItem("easy_ood", ref_a, chunk_a.song_id, chunk_a.chunk_id, 0, str(file_a), 7, 1),
    ]


def _reference_episode(policy: WindowPolicy, env, n_steps: int):
    assert env.episode_steps == n_steps
    """The obvious loop: one env, a list as the window, a list as the action queue."""
    spec = env.action_spec()
    timestep = env.reset()
    window = [flatten_observation(timestep.observation)] * policy.spec.obs_horizon
    queue, windows, goal, pressed = [], [], [], []
    while not timestep.last():
        if not queue:
            windows.append(np.stack(window))
            queue = list(policy.predict_chunk(np.stack(window)[None], None)[0])
        timestep = env.step(np.clip(queue.pop(0), spec.minimum, spec.maximum))
        goal.append(env.step_info()["goal_keys"])
        pressed.append(env.step_info()["pressed_keys"])
        window = window[1:] + [flatten_observation(timestep.observation)]
    return np.array(goal), np.array(pressed), windows


def test_batched_lockstep_matches_one_episode_at_a_time(chunk_files, action_bounds):
    spec = PolicySpec(OBS_DIM, ACTION_DIM, obs_horizon=2, pred_horizon=3, action_horizon=3)
    items = _items(chunk_files)
    chunks = {c.chunk_id: c for _, c, _ in chunk_files}

    batched_policy = WindowPolicy(spec, *action_bounds)
    batched = evaluate_episodes(batched_policy, items, ENV_CONFIG, EvalConfig(lanes=4))
    assert [r.item for r in batched] == items  # results in the order of the items
    assert [r.n_steps for r in batched] == [12, 20, 7]

    # Episodes of different lengths ran together: one reset, one call per Ta = 3 steps
    # of the longest (20 steps -> 7 calls), every call padded to the 4 lanes.
    assert batched_policy.resets == [4]
    assert len(batched_policy.calls) == 7 and all(c.shape == (4, 2, OBS_DIM) for c in batched_policy.calls)

    reference_policy = WindowPolicy(spec, *action_bounds)
    for result, item in zip(batched, items):
        # The reference plays the dm_control env (evaluation runs on the lean path).
        env = make_env(replace(chunks[item.chunk_id], n_steps=item.n_steps), ENV_CONFIG)
        try:
            goal, pressed, windows = _reference_episode(reference_policy, env, item.n_steps)
        finally:
            env.close()
        np.testing.assert_array_equal(result.goal_keys, goal)
        np.testing.assert_array_equal(result.pressed_keys, pressed)
        assert (result.precision, result.recall, result.f1) == pytest.approx(
            tuple(key_press_metrics(goal, pressed).as_dict().values()), abs=1e-12)
        # The windows the batched loop fed this episode's lane are the reference's.
        lane = sorted(range(len(items)), key=lambda i: -items[i].n_steps).index(items.index(item))
        for call, window in zip(batched_policy.calls, windows):
            np.testing.assert_array_equal(call[lane], window)
    # At the start the first observation is repeated To times (as training windows do).
    first = batched_policy.calls[0]
    np.testing.assert_array_equal(first[:, 0], first[:, 1])
    # Some keys were pressed: the comparison above is not between two empty arrays.
    assert any(r.pressed_keys.any() for r in batched) and any(r.goal_keys.any() for r in batched)

    # One lane at a time (pooled envs reused after reset) gives the same episodes.
    single = evaluate_episodes(WindowPolicy(spec, *action_bounds), items, ENV_CONFIG, EvalConfig(lanes=1))
    for a, b in zip(batched, single):
        np.testing.assert_array_equal(a.pressed_keys, b.pressed_keys)
        assert a.f1 == b.f1


def test_policy_with_wrong_output_shape_is_named(chunk_files, action_bounds):
    spec = PolicySpec(OBS_DIM, ACTION_DIM, obs_horizon=1, pred_horizon=2, action_horizon=2)

    class Truncating(WindowPolicy):
        name = "truncating"

        def predict_chunk(self, obs, key):
            return super().predict_chunk(obs, key)[:, :1]

    with pytest.raises(ValueError, match=r"policy 'truncating': predict_chunk returned shape \(2, 1, 39\), "
                                         r"expected \(2, 2, 39\)"):
        evaluate_episodes(Truncating(spec, *action_bounds), _items(chunk_files)[:1], ENV_CONFIG, EvalConfig(lanes=2))


def _result(item, goal, pressed):
    from tasks.policy_eval import EpisodeResult

    m = key_press_metrics(goal, pressed)
    return EpisodeResult(item, m.precision, m.recall, m.f1, goal, pressed)


def test_records_round_trip_and_detect_tampering(tmp_path, chunk_files):
    rng = np.random.default_rng(3)
    results = []
    for item, n in zip(_items(chunk_files), (5, 9, 3)):
        goal = rng.random((n, 88)) < 0.05
        pressed = goal & (rng.random((n, 88)) < 0.7) | (rng.random((n, 88)) < 0.02)
        results.append(_result(replace(item, n_steps=n), goal, pressed))
    path = save_records(tmp_path / "ep" / "easy_ood", results, key="k1", policy_key="bc-123", extra={"group": "easy_ood"})
    doc = read_records(path)
    assert doc["key"] == "k1" and doc["group"] == "easy_ood" and len(doc["episodes"]) == 3
    assert doc["episodes"][1]["chunk_id"] == results[1].item.chunk_id and doc["episodes"][1]["steps"] == 9
    for (goal, pressed), result in zip(load_key_arrays(path), results):
        np.testing.assert_array_equal(goal, result.goal_keys)
        np.testing.assert_array_equal(pressed, result.pressed_keys)
    rows = recompute_episodes(path)
    assert [r["f1"] for r in rows] == [r.f1 for r in results]

    doc["episodes"][2]["f1"] += 0.01
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="episode 2 .* stores f1=.* but its key arrays give"):
        recompute_episodes(path)
    (tmp_path / "ep" / "easy_ood.npz").unlink()
    assert read_records(path) is None  # the json alone is not a complete record


def test_summarize_is_the_mean_over_episodes():
    rows = [{"song_id": "a", "precision": 1.0, "recall": 0.5, "f1": 0.6},
            {"song_id": "a", "precision": 0.5, "recall": 0.5, "f1": 0.2},
            {"song_id": "b", "precision": 0.0, "recall": 1.0, "f1": 0.1}]
    summary = summarize(rows)
    assert summary == {"episodes": 3, "songs": 2, "precision": pytest.approx(0.5), "recall": pytest.approx(2 / 3),
                       "f1": pytest.approx(0.3)}
    assert summarize([])["f1"] is None


@pytest.mark.parametrize("kwargs, message", [
    ({"lanes": 0}, "EvalConfig.lanes=0: expected an integer >= 1"),
    ({"max_steps": 0}, "EvalConfig.max_steps=0: expected None or an integer >= 1"),
    ({"episodes_per_chunk": 1.5}, "EvalConfig.episodes_per_chunk=1.5"),
    ({"seed": -1}, "EvalConfig.seed=-1"),
])
def test_eval_config_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalConfig(**kwargs)
