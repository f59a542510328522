"""`pianoset render`'s players: every specialist kind plays in its own env, keys are coloured."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pytest

from agents.droq import DroQConfig
from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from envs.piano.render import KEY_COLORS, render_episode
from tasks.play import specialist_player
from tasks.specialist import TrainProfile, train_specialist

N_STEPS = 12
TINY = TrainProfile("tiny", total_steps=24, eval_every=24, checkpoint_every=24,
                    agent=DroQConfig(hidden_dims=(8,), batch_size=8, warmup_steps=12, buffer_size=24))


@pytest.fixture(scope="module")
def chunk():
    return replace(make_chunks(load_song("robopianist:CMajorScaleTwoHands"))[0], n_steps=N_STEPS)


@pytest.mark.parametrize("kind", ["droq", "residual", "ik"])
def test_every_specialist_kind_renders_in_its_own_env(tmp_path, chunk, kind):
    train_specialist(chunk, tmp_path / "spec", TINY, kind=kind)
    env, next_action, info = specialist_player(tmp_path / "spec")
    assert info["kind"] == kind
    # residual/ik act in the residual env (1183-dim observation), droq in the plain one (1144)
    assert sum(v.shape[0] for v in env.observation_spec().values()) == (1144 if kind == "droq" else 1183)
    result = render_episode(env, next_action, tmp_path / "play.mp4", width=64, height=48)
    assert result.n_frames == N_STEPS + 1
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(result.path)],
                           capture_output=True, text=True, check=True)
    assert int(probe.stdout.strip()) == N_STEPS + 1


def test_rendered_keys_show_missed_correct_and_wrong_notes(chunk, tmp_path):
    from envs.piano.env import make_env
    from envs.piano.render import _KeyPainter

    env = make_env(chunk)
    env.reset()
    painter = _KeyPainter(env)
    rest = np.array(env.physics.bind(env.task.piano.keys[3].geom[0]).rgba)
    goal, pressed = np.zeros(88, bool), np.zeros(88, bool)
    goal[[0, 1]], pressed[[1, 2]] = True, True
    painter.paint(goal, pressed)
    rgba = [np.array(env.physics.bind(env.task.piano.keys[i].geom[0]).rgba) for i in range(4)]
    for i, state in enumerate(("missed", "correct", "wrong")):
        np.testing.assert_allclose(rgba[i], KEY_COLORS[state], atol=1e-6)
    np.testing.assert_allclose(rgba[3], rest, atol=1e-6)
    painter.paint(None, None)
    np.testing.assert_allclose(env.physics.bind(env.task.piano.keys[0].geom[0]).rgba, painter._rest[0])
