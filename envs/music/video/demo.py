"""The demonstration folder: what `pianoset video` writes, written atomically, and its reader.

Layout::

    <folder>/
        manifest.json        # written last: present and valid == complete (format, files + sha256, summary)
        demonstration.json   # source video, keyboard, offset, quality figures, one record per note
        notes.mid            # the notes, song time
        notes.proto          # the same notes as a NoteSequence, `part` = finger (robopianist "human"
                             # fingering, right 0-4, left 5-9, thumb first): a song source with fingering
        fingertips.npz       # per video frame and per 20 Hz control step (below)
        overlay.mp4          # the video with keyboard, landmarks and labels drawn, for a person to check

fingertips.npz (fingertips in robopianist's order: right thumb..little, then
left; piano frame, metres; NaN where not tracked):

    frame_time (T,) video time      frame_song_time (T,)    landmarks_px (T, 2, 21, 2) [left, right]
    detected (T, 2)  interpolated (T, 2)                    fingertips_xy_raw (T, 10, 2) homography only
    fingertips (T, 10, 3) adjusted (PianoMime App. A)       valid (T, 10)    pressing (T, 10)
    step_time (S,) song time k * 0.05 s                     step_fingertips (S, 10, 3)
    step_valid (S, 10)  step_pressing (S, 10)

Every file is byte-identical when the same video is processed again (the
npz is written with fixed zip timestamps; no wall-clock time is stored
outside `manifest.json`'s `created`).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from envs import atomic
from envs.music.video.notes import Note

FORMAT = "pianoset-video-demo/1"
MANIFEST = "manifest.json"
FILES = ("demonstration.json", "notes.mid", "notes.proto", "fingertips.npz")
OVERLAY = "overlay.mp4"


class DemoError(ValueError):
    """A folder that is not a complete demonstration."""


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.load-compatible .npz with fixed timestamps (np.savez stamps the current time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def write_manifest(staging: Path, summary: dict) -> dict:
    """The manifest (every file with its size and sha256), written last into the staging folder."""
    files = [{"path": path.relative_to(staging).as_posix(), "size": path.stat().st_size,
              "sha256": atomic.sha256_file(path)}
             for path in sorted(p for p in staging.rglob("*") if p.is_file())]
    manifest = {"format": FORMAT, "files": files, "summary": summary,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(staging / MANIFEST, manifest)
    return manifest


@dataclass
class Demonstration:
    folder: Path
    meta: dict  # demonstration.json
    manifest: dict
    arrays: dict[str, np.ndarray]
    notes: list[Note]

    @property
    def fingers(self) -> list[int]:
        return [n["finger"] for n in self.meta["notes"]]

    @property
    def offset_s(self) -> float:
        return float(self.meta["time"]["offset_s"])


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DemoError(f"{folder}: no {MANIFEST} (not a demonstration, or not completely written)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DemoError(f"{folder}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def read_demonstration(folder: Path, *, verify: bool = False) -> Demonstration:
    """Reads a folder written by `pianoset video`; `verify` also checks every file's sha256."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed = {f["path"]: f for f in manifest["files"]}
    for name in FILES:
        if name not in listed or not (folder / name).is_file():
            raise DemoError(f"{folder}: {name} missing")
    if verify:
        for name, record in listed.items():
            if atomic.sha256_file(folder / name) != record["sha256"]:
                raise DemoError(f"{folder}/{name}: sha256 differs from the manifest (changed after writing)")
    meta = json.loads((folder / "demonstration.json").read_text())
    with np.load(folder / "fingertips.npz") as data:
        arrays = {k: data[k] for k in data.files}
    notes = [Note(n["start"], n["end"], n["pitch"], n["velocity"]) for n in meta["notes"]]
    return Demonstration(folder=folder, meta=meta, manifest=manifest, arrays=arrays, notes=notes)
