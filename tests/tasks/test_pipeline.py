"""End to end at the smoke budget: train a specialist, kill it, resume it, roll it
out with 1 and 2 workers, write the song's RLDS shards, read them back."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rlds
import tensorflow_datasets as tfds

from envs.music.chunks import make_chunks, save_chunk
from envs.music.songs import load_song
from envs.piano.metrics import key_press_metrics
from tasks.rlds import builder_dir, read_manifest, write_song_dataset
from tasks.rollouts import LANES, iter_rollout_episodes, rollout_chunk
from tasks.specialist import PROFILES
from tasks.specialist import read_manifest as read_specialist

REPO = Path(__file__).resolve().parents[2]
N_ROLLOUTS = LANES + 2  # two groups, the second one partial


@pytest.fixture(scope="module")
def song():
    return load_song("robopianist:TwinkleTwinkleRousseau")


@pytest.fixture(scope="module")
def chunk(song):
    return replace(make_chunks(song)[0], n_steps=50)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, chunk):
    """A smoke specialist that was killed with SIGKILL after its first checkpoint and resumed."""
    root = tmp_path_factory.mktemp("specialist")
    chunk_file = root / "chunk.json"
    save_chunk(chunk, chunk_file)
    work = root / "work"
    cmd = [sys.executable, "-m", "tasks.specialist", str(chunk_file), str(work), "--profile", "smoke"]
    env = {**os.environ, "MUJOCO_GL": "osmesa"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    checkpoints = work / "checkpoints"
    while time.time() < deadline:
        done = [p for p in checkpoints.glob("step_*") if (p / "COMMITTED.json").exists()] if checkpoints.exists() else []
        if done or proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("_")[1]) for p in checkpoints.glob("step_*") if (p / "COMMITTED.json").exists())
    assert read_specialist(work) is None, "a killed run must not look finished"
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return work, killed_at


def test_killed_training_resumes_from_its_checkpoint(trained):
    work, killed_at = trained
    manifest = read_specialist(work)
    assert 0 < killed_at < PROFILES["smoke"].total_steps
    assert manifest["resumed_from_step"] >= killed_at
    assert manifest["steps"] == PROFILES["smoke"].total_steps
    curve = json.loads((work / "learning_curve.json").read_text())
    assert [p["step"] for p in curve] == [120, 240]
    assert all(0.0 <= p["f1"] <= 1.0 for p in curve)


def test_rollouts_shards_and_readers(trained, chunk, song, tmp_path):
    work, _ = trained
    one = rollout_chunk(chunk, song.song_id, work, tmp_path / "r1", n_rollouts=N_ROLLOUTS, workers=1)
    two = rollout_chunk(chunk, song.song_id, work, tmp_path / "r2", n_rollouts=N_ROLLOUTS, workers=2)
    # Same seeds, same episodes, whatever the number of workers.
    assert [e["seed"] for e in one["episodes"]] == list(range(N_ROLLOUTS))
    assert one["episodes"] == two["episodes"]
    for a, b in zip(iter_rollout_episodes(tmp_path / "r1"), iter_rollout_episodes(tmp_path / "r2")):
        np.testing.assert_array_equal(a.steps["action"], b.steps["action"])
        np.testing.assert_array_equal(a.steps["observation"]["fingertip_positions"],
                                      b.steps["observation"]["fingertip_positions"])
    # Distinct seeds give distinct trajectories.
    episodes = list(iter_rollout_episodes(tmp_path / "r1"))
    assert not np.array_equal(episodes[0].steps["action"], episodes[1].steps["action"])
    # A rerun is served from the manifest.
    mtime = (tmp_path / "r1" / "group-00000.npz").stat().st_mtime_ns
    rollout_chunk(chunk, song.song_id, work, tmp_path / "r1", n_rollouts=N_ROLLOUTS, workers=1)
    assert (tmp_path / "r1" / "group-00000.npz").stat().st_mtime_ns == mtime

    shards = tmp_path / "shards"
    manifest = write_song_dataset(shards, song.song_id, iter_rollout_episodes(tmp_path / "r1"))
    assert manifest.n_episodes == N_ROLLOUTS
    song_dir = shards / song.song_id
    assert read_manifest(song_dir, verify=True).n_steps == N_ROLLOUTS * chunk.n_steps

    builder = tfds.builder_from_directory(str(builder_dir(song_dir)))
    ds = builder.as_dataset(split="train")
    stored = list(tfds.as_numpy(ds))
    assert len(stored) == N_ROLLOUTS
    for ep in stored:
        steps = list(ep["steps"])
        assert len(steps) == chunk.n_steps
        obs = steps[0]["observation"]
        assert obs["piano_goal"].shape == (968,) and obs["piano_goal"].dtype == bool
        assert obs["sustain_goal"].dtype == bool and obs["hand_state"].dtype == np.float32
        assert steps[0]["action"].shape == (39,) and steps[0]["pressed_keys"].dtype == bool
        assert steps[0]["is_first"] and steps[-1]["is_last"] and not steps[-1]["is_terminal"]
        goal = np.stack([s["observation"]["piano_goal"][:88] for s in steps])
        pressed = np.stack([s["pressed_keys"] for s in steps])
        assert key_press_metrics(goal, pressed).f1 == pytest.approx(float(ep["f1"]), abs=1e-6)
        assert ep["song_id"].decode() == song.song_id and ep["chunk_id"].decode() == chunk.chunk_id
    # Many songs at once, and the rlds library on the result.
    copy = tmp_path / "elsewhere" / song.song_id
    shutil.copytree(song_dir, copy)
    both = tfds.builder_from_directories([str(builder_dir(song_dir)), str(builder_dir(copy))])
    ds_both = both.as_dataset(split="train")
    assert sum(1 for _ in ds_both) == 2 * N_ROLLOUTS
    total_steps = ds.map(lambda ep: rlds.transformations.episode_length(ep[rlds.STEPS])).reduce(0, lambda a, b: a + b)
    assert int(total_steps) == N_ROLLOUTS * chunk.n_steps


def _probe(path: Path) -> str:
    import imageio_ffmpeg

    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True).stderr


def test_render_specialist_with_sound(trained, chunk, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    work, _ = trained
    out = tmp_path / "specialist.mp4"
    result = CliRunner().invoke(app, ["render", "--specialist", str(work), "--out", str(out),
                                      "--width", "160", "--height", "120", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["frames"] == chunk.n_steps + 1 and doc["fps"] == 20.0
    info = _probe(out)
    assert "Video: h264" in info and "Audio: aac" in info
    assert "Duration: 00:00:02.5" in info  # 51 frames at 20 fps


def test_audio_synthesis_is_not_silent_when_keys_sound():
    from robopianist.music import midi_message

    from envs.piano.render import synthesize

    events = [midi_message.NoteOn(note=60, velocity=80, time=0.5), midi_message.NoteOff(note=60, time=1.0)]
    audio = synthesize(events, 16000, 32000)
    assert audio.shape == (32000,)
    assert np.abs(audio[:7000]).max() == 0  # before the note starts at 0.5 s
    assert np.abs(audio[8000:16000]).max() > 1000  # the note sounds
    assert synthesize([], 16000, 100).tolist() == [0] * 100
