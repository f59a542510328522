"""Fingertip references: resampling onto chunk steps (stretch, trim), chunk files, `video:` refs."""

from dataclasses import replace

import numpy as np
import pytest
from note_seq import music_pb2

from envs.music.chunks import STRETCH, chunk_to_json, load_chunk, make_chunks, save_chunk
from envs.music.reference import FingertipReference, ReferenceError
from envs.music.songs import SongError, load_song, make_song
from envs.music.video import demo


def _song(first_onset: float = 1.0, n_notes: int = 8):
    seq = music_pb2.NoteSequence()
    for i in range(n_notes):
        seq.notes.add(start_time=first_onset + 0.5 * i, end_time=first_onset + 0.5 * i + 0.4, pitch=60 + i,
                      velocity=80, part=i % 5)
    seq.total_time = first_onset + 0.5 * n_notes
    return make_song(seq, source="midi", title="ref test", ref="ref-test.mid")


def _ramp_reference(duration_s: float, timestep: float = 0.05) -> FingertipReference:
    """x of every fingertip = song time, y = finger index, z = 0.03; finger 9 lost from 1.5 s to 2 s."""
    times = np.arange(int(duration_s / timestep) + 1) * timestep
    positions = np.zeros((len(times), 10, 3))
    positions[..., 0] = times[:, None]
    positions[..., 1] = np.arange(10)
    positions[..., 2] = 0.03
    positions[(times >= 1.5) & (times <= 2.0), 9] = np.nan
    pressing = np.zeros((len(times), 10), bool)
    pressing[:, 0] = (times % 0.5) < 0.25
    return FingertipReference(timestep, positions, pressing)


def test_reference_is_resampled_through_the_stretch_and_the_trimmed_silence():
    song = replace(_song(first_onset=1.0), reference=_ramp_reference(6.0))
    [chunk] = make_chunks(song)
    ref = chunk.reference
    assert ref.positions.shape == (chunk.n_steps, 10, 3)
    # chunk step j plays stretched time j * 0.05 after the first onset: song time 1.0 + j * 0.05 / 1.25
    expected = 1.0 + np.arange(chunk.n_steps) * chunk.control_timestep / STRETCH
    tracked = ref.valid[:, 0]
    assert tracked.all()
    np.testing.assert_allclose(ref.positions[:, 0, 0], expected, atol=1e-9)
    np.testing.assert_allclose(ref.positions[:, 3, 1], 3.0)
    lost = (expected > 1.5 - 0.05) & (expected < 2.0 + 0.05)  # a neighbour sample is NaN
    assert not ref.valid[lost, 9].any() and ref.valid[~lost, 9][expected[~lost] < 5.9].all()
    assert not ref.pressing[~ref.valid].any()
    # past the reference's end: untracked, not extrapolated
    late = replace(song, reference=_ramp_reference(2.0))
    [short] = make_chunks(late)
    assert not short.reference.valid[-1].any()


def test_interpolation_is_linear_between_samples():
    reference = FingertipReference(0.1, np.stack([np.zeros((10, 3)), np.ones((10, 3))]), np.zeros((2, 10), bool))
    positions, _ = reference.at(np.array([0.0, 0.025, 0.1, 0.2]))
    np.testing.assert_allclose(positions[:3, 0, 0], [0.0, 0.25, 1.0])
    assert np.isnan(positions[3]).all()


def test_chunk_file_keeps_the_reference_and_other_chunks_are_unchanged(tmp_path):
    plain = _song()
    [without] = make_chunks(plain)
    assert "reference" not in chunk_to_json(without)
    [chunk] = make_chunks(replace(plain, reference=_ramp_reference(6.0)))
    assert chunk_to_json(chunk) != chunk_to_json(without)  # the reference is part of the chunk's identity
    save_chunk(chunk, tmp_path / "chunk.json")
    back = load_chunk(tmp_path / "chunk.json")
    np.testing.assert_array_equal(back.reference.valid, chunk.reference.valid)
    np.testing.assert_allclose(back.reference.positions, chunk.reference.positions, atol=5e-5, equal_nan=True)
    np.testing.assert_array_equal(back.reference.pressing, chunk.reference.pressing)


def test_bad_reference_shapes_are_refused():
    with pytest.raises(ReferenceError, match=r"\(S, 10, 3\)"):
        FingertipReference(0.05, np.zeros((4, 5, 3)), np.zeros((4, 5), bool))


def _write_demo(folder, song, reference: FingertipReference):
    """A demonstration folder in `pianoset video`'s layout (envs.music.video.demo), written by hand."""
    staging = folder
    staging.mkdir(parents=True)
    seq = song.midi.seq
    (staging / "notes.proto").write_bytes(seq.SerializeToString())
    (staging / "notes.mid").write_bytes(b"")  # not read by the song source
    steps = len(reference.positions)
    meta = {"time": {"offset_s": 0.0, "control_timestep_s": reference.timestep, "steps": steps},
            "notes": [{"start": n.start_time, "end": n.end_time, "pitch": n.pitch, "velocity": n.velocity,
                       "finger": n.part} for n in seq.notes]}
    import json

    (staging / "demonstration.json").write_text(json.dumps(meta))
    valid = ~np.isnan(reference.positions[..., 0])
    demo.write_npz(staging / "fingertips.npz", {
        "step_time": np.arange(steps) * reference.timestep, "step_fingertips": reference.positions,
        "step_valid": valid, "step_pressing": reference.pressing})
    demo.write_manifest(staging, {})


def test_video_ref_loads_notes_fingering_and_fingertips(tmp_path):
    folder = tmp_path / "performance"
    _write_demo(folder, _song(), _ramp_reference(6.0))
    song = load_song(f"video:{folder}")
    assert song.source == "video" and song.ref == f"video:{folder}" and song.has_fingering()
    assert [n.part for n in song.midi.seq.notes] == [i % 5 for i in range(8)]
    assert song.reference.positions.shape == (121, 10, 3)
    [chunk] = make_chunks(song)
    assert chunk.reference is not None and chunk.reference.valid[:, 0].all()


def test_video_ref_errors_name_the_folder(tmp_path):
    with pytest.raises(SongError, match="nowhere.*no manifest.json"):
        load_song(f"video:{tmp_path / 'nowhere'}")
    folder = tmp_path / "broken"
    _write_demo(folder, _song(), _ramp_reference(6.0))
    (folder / "fingertips.npz").unlink()
    with pytest.raises(SongError, match="broken.*fingertips.npz missing"):
        load_song(f"video:{folder}")
