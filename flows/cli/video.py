"""`pianoset video` and `pianoset transcribe`: piano videos and recordings to demonstrations and notes.

"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.common import app, emit_json, fail, out, progress_bar

DEMOS_DIR = Path("datasets/demos")


@app.command()
def video(
    video_file: Path = typer.Argument(..., metavar="VIDEO", help="a top-view piano video (any format ffmpeg reads)"),
    midi: Optional[Path] = typer.Option(None, "--midi", help="the notes played, as a MIDI file (aligned to the video)"),
    transcribe_audio: bool = typer.Option(False, "--transcribe", help="take the notes from the video's audio"),
    corners: Optional[str] = typer.Option(
        None, "--corners", help="keyboard corners in pixels 'u,v u,v u,v u,v': A0 back, C8 back, C8 front, A0 front"),
    offset: Optional[float] = typer.Option(
        None, "--offset", help="video time (s) of the MIDI file's time 0 (default: estimated from the audio)"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="demonstration folder (default: datasets/demos/<VIDEO stem>)"),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="also write overlay.mp4 for checking by eye"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document on stdout"),
) -> None:
    """Turn a piano video into a demonstration folder: notes, offset, fingertips, fingering, overlay."""
    from envs.music.video.keyboard import KeyboardError, parse_corners
    from envs.music.video.media import MediaError
    from envs.music.video.pipeline import VideoDemoConfig, VideoDemoError, make_demonstration

    if (midi is None) == (not transcribe_audio):
        fail("give exactly one of --midi FILE or --transcribe")
    if midi is not None and not midi.is_file():
        fail(f"--midi {midi}: no such file")
    if offset is not None and midi is None:
        fail("--offset applies to a --midi file (transcribed notes share the video's clock)")
    target = out_dir or DEMOS_DIR / video_file.stem
    try:
        corner_points = parse_corners(corners) if corners else None
        with progress_bar("{task.description}", as_json) as progress:
            tasks: dict[str, int] = {}

            def report(stage: str, done: int, total: Optional[int]) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total, description=stage)

            summary = make_demonstration(video_file, target, midi=midi, transcribe_audio=transcribe_audio,
                                         corners=corner_points, offset_s=offset,
                                         config=VideoDemoConfig(overlay=overlay), progress=report)
    except (VideoDemoError, KeyboardError, MediaError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        emit_json(summary)
        return
    q = summary["quality"]
    out.print(f"wrote {summary['out']}: {summary['frames']} frames, {summary['notes']} notes, "
              f"offset {summary['offset_s']:+.3f} s ({q['offset'].get('method')})")
    hands = q["hands"]
    out.print(f"hands found in {hands['left']['detected']:.1%} (left) and {hands['right']['detected']:.1%} (right) "
              f"of frames; {summary['hand_frames_per_second']:.1f} frames/s")
    f = q["fingering"]
    out.print(f"fingering: {f['labelled']} of {f['notes']} notes labelled, {f['on_key']:.1%} with the finger on the "
              f"key, mean confidence {f['mean_confidence']:.2f}; video-priors rule agrees on {f['rules_agree']:.1%}")


@app.command()
def transcribe(
    audio: Path = typer.Argument(..., metavar="AUDIO", help="an audio or video file (any format ffmpeg reads)"),
    out_file: Optional[Path] = typer.Option(
        None, "--out", "-o", help="MIDI file to write (default: AUDIO with the suffix .mid)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document on stdout"),
) -> None:
    """Transcribe a piano recording to a MIDI file (basic-pitch) that `--song` / catalog sources can use."""
    from envs.music.songs import SongError, load_song, validate_song
    from envs.music.video.media import MediaError
    from envs.music.video.notes import write_midi
    from envs.music.video.transcribe import transcribe as transcribe_file

    target = out_file or audio.with_suffix(".mid")
    if target.resolve() == audio.resolve():
        fail(f"--out {target}: would overwrite the input")
    try:
        with progress_bar("transcribing", as_json) as progress:
            task = progress.add_task("transcribe", total=1)
            notes = transcribe_file(audio)
            progress.update(task, completed=1)
    except (MediaError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if not notes:
        fail(f"{audio}: no notes heard")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    write_midi(notes, tmp)
    tmp.replace(target)
    song = load_song(str(target), validate=False)
    try:
        validate_song(song)
        playable, reason = True, None
    except SongError as exc:
        playable, reason = False, str(exc)
    doc = {"path": str(target), "notes": len(notes), "duration_s": round(max(n.end for n in notes), 3),
           "song_id": song.song_id, "playable": playable, "reason": reason}
    if as_json:
        emit_json(doc)
        return
    out.print(f"wrote {target}: {doc['notes']} notes, {doc['duration_s']:.1f} s, song id {song.song_id}"
              + ("" if playable else f" [red](unplayable: {reason})[/red]"))
