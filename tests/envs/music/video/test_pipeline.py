"""The pipeline in-process on a short generated video: given corners and offset, no audio, the generator."""

import subprocess

import numpy as np
import pytest

from envs.music.video.demo import OVERLAY, read_demonstration
from envs.music.video.pipeline import VideoDemoConfig, VideoDemoError, make_demonstration
from tests.envs.music.video.videogen import RIGHT, VideoSpec, generate

SHORT = VideoSpec(seed=11, duration_s=2.0)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    return generate(SHORT, tmp_path_factory.mktemp("short"))


def test_the_generator_is_deterministic(short, tmp_path):
    video, midi, truth = short
    video2, midi2, truth2 = generate(SHORT, tmp_path)
    assert video.read_bytes() == video2.read_bytes() and midi.read_bytes() == midi2.read_bytes()
    assert truth.notes == truth2.notes and truth.offset_s == truth2.offset_s
    np.testing.assert_array_equal(truth.fingertips_xy, truth2.fingertips_xy)
    assert {n["hand"] for n in truth.notes} == {0, 1}


def test_given_corners_and_offset_skip_detection_and_transcription(short, tmp_path):
    video, midi, truth = short
    stages = []
    summary = make_demonstration(video, tmp_path / "demo", midi=midi, corners=truth.corners_px,
                                 offset_s=truth.offset_s, config=VideoDemoConfig(overlay=False),
                                 progress=lambda stage, done, total: stages.append(stage))
    assert "transcription" not in stages and "overlay" not in stages and "hands" in stages
    demo = read_demonstration(tmp_path / "demo", verify=True)
    assert demo.meta["keyboard"]["source"] == "given" and demo.meta["offset"]["method"] == "given"
    np.testing.assert_allclose(demo.meta["keyboard"]["corners_px"], truth.corners_px, atol=1e-3)
    assert not (tmp_path / "demo" / OVERLAY).exists() and "transcription" not in summary["quality"]
    fingers = [(n["finger"] - 1) + (0 if n["hand"] == RIGHT else 5) for n in truth.notes]
    assert demo.fingers == fingers


def test_no_audio_to_transcribe_is_an_error_and_writes_nothing(short, tmp_path):
    video, midi, _ = short
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-an", "-c:v", "copy", str(silent)], check=True)
    with pytest.raises(VideoDemoError, match="silent.mp4: no audio stream"):
        make_demonstration(silent, tmp_path / "demo", transcribe_audio=True)
    with pytest.raises(VideoDemoError, match="--offset"):
        make_demonstration(silent, tmp_path / "demo", midi=midi)
    with pytest.raises(VideoDemoError, match="exactly one"):
        make_demonstration(silent, tmp_path / "demo", midi=midi, transcribe_audio=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silent.mp4"]
