"""`pianoset video` and `pianoset transcribe` end to end on a generated test video.

Real MediaPipe, real basic-pitch, real homography, run as a user runs them
(the installed `pianoset`, as subprocesses); the ground truth comes from the
generator's geometry (tests/envs/music/video/videogen.py), never from a detector.
"""

import json
import subprocess

import numpy as np
import pytest

from envs.music.songs import load_song
from envs.music.video.demo import read_demonstration
from envs.music.video.keyboard import key_geometry
from envs.music.video.media import probe
from envs.music.video.notes import Note, load_notes, match_notes, onset_f1
from tests.envs.music.video.videogen import LEFT, RIGHT, VideoSpec, generate

from tests.acceptance.conftest import PIANOSET, REPO, user_env


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PIANOSET), *args], env=user_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return generate(VideoSpec(seed=3, photos=("handDst", "handSrc")), tmp_path_factory.mktemp("video"))


@pytest.fixture(scope="module")
def from_midi(scene, tmp_path_factory):
    video, midi, _ = scene
    out = tmp_path_factory.mktemp("demos") / "from_midi"
    result = run_cli("video", str(video), "--midi", str(midi), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def from_audio(scene, tmp_path_factory):
    video, _, _ = scene
    out = tmp_path_factory.mktemp("demos") / "from_audio"
    result = run_cli("video", str(video), "--transcribe", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(result.stdout)


def truth_fingers(truth) -> list[int]:
    """robopianist's finger index of each true note: right hand 0-4, left 5-9, thumb first."""
    return [(n["finger"] - 1) + (0 if n["hand"] == RIGHT else 5) for n in truth.notes]


def truth_notes_video_time(truth) -> list[Note]:
    return [Note(n["start"] + truth.offset_s, n["end"] + truth.offset_s, n["pitch"]) for n in truth.notes]


def fingering_accuracy(demo, truth, rule: str) -> tuple[float, int]:
    """Share of the true notes matched (onset within 50 ms, same pitch) whose finger is right."""
    found = [Note(n.start + demo.offset_s, n.end + demo.offset_s, n.pitch) for n in demo.notes]
    pairs = match_notes(truth_notes_video_time(truth), found)
    fingers = truth_fingers(truth)
    labels = [demo.meta["notes"][j]["finger"] if rule == "onset" else demo.meta["notes"][j]["priors"]["finger"]
              for _, j in pairs]
    return float(np.mean([label == fingers[i] for (i, _), label in zip(pairs, labels)])), len(pairs)


def test_keyboard_corners_found_within_3_px(scene, from_midi):
    _, _, truth = scene
    demo = read_demonstration(from_midi[0], verify=True)
    corners = np.array(demo.meta["keyboard"]["corners_px"])
    assert demo.meta["keyboard"]["source"] == "auto"
    assert np.linalg.norm(corners - truth.corners_px, axis=1).max() <= 3.0


def test_offset_of_the_midi_file_within_20_ms(scene, from_midi):
    _, _, truth = scene
    summary = from_midi[1]
    assert abs(summary["offset_s"] - truth.offset_s) <= 0.020
    assert summary["quality"]["offset"]["matched_fraction"] >= 0.9


def test_each_hand_found_in_95_percent_of_frames(from_midi):
    demo = read_demonstration(from_midi[0])
    detected = demo.arrays["detected"]
    assert detected.shape == (demo.meta["time"]["frames"], 2)
    assert detected.mean(axis=0).min() >= 0.95
    assert from_midi[1]["quality"]["hands"]["left"]["detected"] >= 0.95


def test_fingertips_in_the_piano_frame_within_4_mm_median_8_mm_p90(scene, from_midi):
    _, _, truth = scene
    demo = read_demonstration(from_midi[0])
    found = demo.arrays["fingertips_xy_raw"]  # robopianist order: right hand first
    true = np.concatenate([truth.fingertips_xy[:, RIGHT], truth.fingertips_xy[:, LEFT]], axis=1)
    assert found.shape == true.shape
    error_mm = 1000 * np.linalg.norm(found - true, axis=-1)[demo.arrays["valid"]]
    assert error_mm.size >= 0.95 * true.shape[0] * true.shape[1]
    assert np.median(error_mm) <= 4.0
    assert np.percentile(error_mm, 90) <= 8.0


def test_fingering_from_the_midi_file_at_least_95_percent(scene, from_midi):
    _, _, truth = scene
    demo = read_demonstration(from_midi[0])
    accuracy, matched = fingering_accuracy(demo, truth, "onset")
    assert matched == len(truth.notes) == len(demo.notes)
    assert accuracy >= 0.95
    priors, _ = fingering_accuracy(demo, truth, "priors")  # reported beside it, not required
    assert 0.0 <= priors <= 1.0
    assert all(0.0 <= n["confidence"] <= 1.0 for n in demo.meta["notes"])


def test_fingering_and_onsets_from_the_transcription(scene, from_audio):
    _, _, truth = scene
    demo = read_demonstration(from_audio[0])
    assert demo.meta["notes_source"]["kind"] == "transcription" and demo.offset_s == 0.0
    assert onset_f1(truth_notes_video_time(truth), demo.notes)["f1"] >= 0.8
    accuracy, matched = fingering_accuracy(demo, truth, "onset")
    assert matched >= 0.9 * len(truth.notes)
    assert accuracy >= 0.95


def test_pressing_fingertips_snap_to_the_key_centre_line(scene, from_midi):
    _, _, truth = scene
    demo = read_demonstration(from_midi[0])
    geometry = key_geometry()
    times, fingertips, pressing = demo.arrays["frame_time"], demo.arrays["fingertips"], demo.arrays["pressing"]
    for note, finger in zip(truth.notes, truth_fingers(truth)):
        onset = note["start"] + truth.offset_s
        frame = int(np.flatnonzero(times >= onset + 0.02)[0])
        assert pressing[frame, finger]
        assert fingertips[frame, finger, 1] == pytest.approx(geometry.centers[note["pitch"] - 21, 1])
        assert fingertips[frame, finger, 2] == 0.0  # PianoMime App. A step 4
    assert np.all(fingertips[~pressing & demo.arrays["valid"], 2] == pytest.approx(2 * geometry.white_height))


def test_control_steps_at_20_hz_and_the_song_source_files(scene, from_midi):
    video, midi, truth = scene
    demo = read_demonstration(from_midi[0])
    steps = demo.arrays["step_time"]
    assert np.allclose(np.diff(steps), 0.05) and steps[0] == 0.0
    assert demo.arrays["step_fingertips"].shape == (len(steps), 10, 3)
    # each step is the frames' fingertips interpolated at its video time (the adjustment moves y only)
    frame_times, raw = demo.arrays["frame_time"], demo.arrays["fingertips_xy_raw"]
    step_x = demo.arrays["step_fingertips"][..., 0]
    inside = (steps + demo.offset_s >= frame_times[0]) & (steps + demo.offset_s <= frame_times[-1])
    for finger in range(10):
        expected = np.interp(steps[inside] + demo.offset_s, frame_times, raw[:, finger, 0])
        ok = demo.arrays["step_valid"][inside, finger]
        assert ok.mean() >= 0.95
        np.testing.assert_allclose(step_x[inside, finger][ok], expected[ok], atol=1e-9)
    song = load_song(str(from_midi[0] / "notes.proto"))
    assert song.has_fingering()
    assert [n.part for n in song.midi.seq.notes] == demo.fingers
    assert [(n.pitch, round(n.start, 3)) for n in load_notes(from_midi[0] / "notes.mid")] == \
        [(n.pitch, round(n.start, 3)) for n in load_notes(midi)]
    overlay = probe(from_midi[0] / "overlay.mp4")
    source = probe(video)
    assert (overlay.width, overlay.height, overlay.n_frames) == (source.width, source.height, source.n_frames)


def test_rerun_gives_identical_files(scene, from_midi, tmp_path):
    video, midi, _ = scene
    again = tmp_path / "again"
    result = run_cli("video", str(video), "--midi", str(midi), "--out", str(again), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    first = read_demonstration(from_midi[0]).manifest["files"]
    second = read_demonstration(again, verify=True).manifest["files"]
    assert first == second
    assert {f["path"] for f in first} == {"demonstration.json", "notes.mid", "notes.proto", "fingertips.npz",
                                         "overlay.mp4"}


def test_transcribe_command_writes_a_playable_midi(scene, tmp_path):
    video, _, truth = scene
    target = tmp_path / "heard.mid"
    result = run_cli("transcribe", str(video), "--out", str(target), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert doc["path"] == str(target) and doc["playable"] and doc["notes"] >= len(truth.notes)
    song = load_song(str(target))
    assert song.song_id == doc["song_id"]
    assert onset_f1(truth_notes_video_time(truth), load_notes(target))["f1"] >= 0.8


def test_cli_refuses_bad_input_naming_it(scene, tmp_path):
    video, midi, _ = scene
    neither = run_cli("video", str(video), "--out", str(tmp_path / "x"))
    assert neither.returncode == 2 and "--midi" in neither.stderr
    corners = run_cli("video", str(video), "--midi", str(midi), "--corners", "1,2,3", "--out", str(tmp_path / "y"))
    assert corners.returncode == 2 and "--corners" in corners.stderr and "8 numbers" in corners.stderr
    missing = run_cli("video", str(tmp_path / "nope.mp4"), "--transcribe", "--out", str(tmp_path / "z"))
    assert missing.returncode == 2 and "nope.mp4" in missing.stderr
    assert not any(p.exists() for p in (tmp_path / "x", tmp_path / "y", tmp_path / "z"))


def test_demonstration_is_a_song_source_of_the_catalog_and_the_collection(from_midi, tmp_path):
    """`video:<folder>` in `pianoset songs` and `pianoset collect --specialist residual` at the smoke
    budget: the nominal follows the video's fingertips (nominal_source: reference) and the reward's
    fingering term is robopianist's, from the video's fingering labels (fingering: human)."""
    import yaml

    from envs.music.chunks import load_chunk
    from envs.music.reference import reference_from_demonstration
    from tests.acceptance.conftest import Project

    folder = from_midi[0]
    project = Project(tmp_path, tmp_path)
    _, doc, _ = project.pianoset("songs", "--source", f"video:{folder}", "--catalog-dir", "catalog")
    [row] = doc["songs"]
    assert row["source"] == "video" and row["ref"] == f"video:{folder}" and row["playable"]

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["collect"].update(songs=[f"video:{folder}"], specialist="residual", n_rollouts=2, workers=1,
                             parallel_chunks=1, register=False, env={"fingering": "human"},
                             residual={"nominal_source": "reference"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _, doc, stderr = project.pianoset("collect", "--params", "params.yaml", timeout=1200)
    assert doc["counts"]["done"] == 1, stderr[-3000:]
    [chunk_file] = (tmp_path / "work").glob("*/chunk-000.json")
    chunk = load_chunk(chunk_file)
    assert chunk.reference is not None and chunk.reference.valid.mean() >= 0.95
    # the residual's nominal was solved along the video's fingertips
    [nominal] = (tmp_path / "work").glob("*/*/specialist/nominal.npz")
    with np.load(nominal) as data:
        assert str(data["key"]).endswith("|reference")
        targets = data["targets"]
    demo_y = chunk.reference.positions[..., 1]
    close = np.abs(targets[..., 1] - demo_y)[chunk.reference.valid]
    assert np.median(close) < 0.005  # the IK targets are the video's y (pressing fingers: their key's centre)
    assert reference_from_demonstration(folder).positions.shape[1:] == (10, 3)

    import tensorflow_datasets as tfds

    [song_dir] = [p for p in (tmp_path / "datasets/shards").iterdir() if not p.name.startswith(".")]
    builder = tfds.builder_from_directory(str(next(p for p in song_dir.iterdir() if p.is_dir())))
    episodes = list(builder.as_dataset(split="train"))
    assert len(episodes) == 2
    assert {e["fingering_mode"].numpy() for e in episodes} == {b"human"}
    fingering = np.array([float(step["reward_fingering"]) for step in episodes[0]["steps"]])
    assert fingering.shape == (chunk.n_steps,) and np.abs(fingering).sum() > 0  # robopianist's term, labelled
