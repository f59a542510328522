"""Video demonstrations: accuracy on generated test videos, and the hand pass's speed.

For each seed, a test video (tests/envs/video/videogen.py: real hand photos on
a drawn keyboard, FluidSynth audio) goes through `make_demonstration` twice,
with the generator's MIDI file and with the transcription, and is scored
against the generator's ground truth:

  corners_px     largest corner error of the detected keyboard
  detected       the smaller of the two hands' detection rates
  tip_med/p90    fingertip error in the piano frame (mm; homography only, before PianoMime's adjustment)
  onset/priors   fingering accuracy of the onset rule and of the video-priors rule (matched notes)
  f1             transcription onset F1 (mir_eval, 50 ms)
  offset_ms      error of the MIDI file's estimated offset

Speed (same video, this process): frames/s of decoding alone (the baseline),
of the hand pass as run (crops around tracked hands), and of the hand pass
with tracking off (the tile search on every frame); printed with their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

PHOTOS = [("handDst", "handSrc"), ("handSrc", "handDst"), ("handSrc", "handSrc"), ("handDst", "handDst")]


def score(truth, folder: Path, rule_notes_from_midi: bool) -> dict:
    from envs.music.video.demo import read_demonstration
    from envs.music.video.notes import Note, match_notes, onset_f1
    from tests.envs.music.video.videogen import LEFT, RIGHT

    demo = read_demonstration(folder)
    true_notes = [Note(n["start"] + truth.offset_s, n["end"] + truth.offset_s, n["pitch"]) for n in truth.notes]
    found = [Note(n.start + demo.offset_s, n.end + demo.offset_s, n.pitch) for n in demo.notes]
    fingers = [(n["finger"] - 1) + (0 if n["hand"] == RIGHT else 5) for n in truth.notes]
    pairs = match_notes(true_notes, found)
    true_xy = np.concatenate([truth.fingertips_xy[:, RIGHT], truth.fingertips_xy[:, LEFT]], axis=1)
    error = 1000 * np.linalg.norm(demo.arrays["fingertips_xy_raw"] - true_xy, axis=-1)[demo.arrays["valid"]]
    corners = np.array(demo.meta["keyboard"]["corners_px"])
    return {
        "notes": len(true_notes), "found": len(found), "matched": len(pairs),
        "corners_px": float(np.linalg.norm(corners - truth.corners_px, axis=1).max()),
        "detected": float(demo.arrays["detected"].mean(axis=0).min()),
        "tip_med": float(np.median(error)), "tip_p90": float(np.percentile(error, 90)),
        "onset": float(np.mean([demo.meta["notes"][j]["finger"] == fingers[i] for i, j in pairs])),
        "priors": float(np.mean([demo.meta["notes"][j]["priors"]["finger"] == fingers[i] for i, j in pairs])),
        "f1": onset_f1(true_notes, found)["f1"],
        "offset_ms": 1000 * (demo.offset_s - truth.offset_s) if rule_notes_from_midi else 0.0,
    }


def hand_pass_fps(video: Path, keyboard, config) -> tuple[float, int]:
    from envs.music.video.hands import HandTracker
    from envs.music.video.media import frames

    tracker = HandTracker(keyboard, 30.0, config)
    start = time.perf_counter()
    n = sum(1 for frame in frames(video) if tracker.update(frame) is not None)
    fps = n / (time.perf_counter() - start)
    tracker.close()
    return fps, tracker.landmarker.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from envs.music.video.hands import HandsConfig
    from envs.music.video.keyboard import keyboard_from_corners
    from envs.music.video.media import frames
    from envs.music.video.pipeline import make_demonstration
    from tests.envs.music.video.videogen import VideoSpec, generate

    rows, speed = [], {}
    with tempfile.TemporaryDirectory(prefix="pianoset-video-bench-") as tmp:
        for seed in range(args.seeds):
            work = Path(tmp) / f"seed{seed}"
            video, midi, truth = generate(VideoSpec(seed=seed, photos=PHOTOS[seed % len(PHOTOS)]), work)
            make_demonstration(video, work / "midi", midi=midi)
            make_demonstration(video, work / "audio", transcribe_audio=True)
            rows.append({"seed": seed, "from": "midi", **score(truth, work / "midi", True)})
            rows.append({"seed": seed, "from": "audio", **score(truth, work / "audio", False)})
            if seed == 0:
                keyboard = keyboard_from_corners(truth.corners_px, (1280, 720))
                start = time.perf_counter()
                n = sum(1 for _ in frames(video))
                speed["decode_only"] = n / (time.perf_counter() - start)
                speed["hands_tracked"], speed["calls_tracked"] = hand_pass_fps(video, keyboard, HandsConfig())
                untracked = HandsConfig(max_lost_s=1e-9, search_every_s=1e-9)
                speed["hands_tiles_every_frame"], speed["calls_untracked"] = hand_pass_fps(video, keyboard, untracked)
    result = {"rows": rows, "speed": {k: round(v, 2) for k, v in speed.items()},
              "ratios": {"hands_tracked / decode_only": round(speed["hands_tracked"] / speed["decode_only"], 4),
                         "hands_tracked / hands_tiles_every_frame":
                             round(speed["hands_tracked"] / speed["hands_tiles_every_frame"], 3)}}
    if args.json:
        print(json.dumps(result))
        return
    cols = ("seed", "from", "notes", "found", "matched", "corners_px", "detected", "tip_med", "tip_p90", "onset",
            "priors", "f1", "offset_ms")
    print(" ".join(f"{c:>10s}" for c in cols))
    for row in rows:
        print(" ".join(f"{row[c]:>10.3f}" if isinstance(row[c], float) else f"{row[c]:>10}" for c in cols))
    for source in ("midi", "audio"):
        sel = [r for r in rows if r["from"] == source]
        print(f"{source:>5s}: worst corners {max(r['corners_px'] for r in sel):.2f} px, detection >= "
              f"{min(r['detected'] for r in sel):.3f}, tip median <= {max(r['tip_med'] for r in sel):.2f} mm, "
              f"p90 <= {max(r['tip_p90'] for r in sel):.2f} mm, onset rule >= {min(r['onset'] for r in sel):.3f}, "
              f"priors rule {min(r['priors'] for r in sel):.3f}-{max(r['priors'] for r in sel):.3f}, "
              f"F1 >= {min(r['f1'] for r in sel):.3f}, |offset| <= {max(abs(r['offset_ms']) for r in sel):.1f} ms")
    for name, value in result["speed"].items():
        print(f"  {name:26s} {value:9.2f}")
    for name, ratio in result["ratios"].items():
        print(f"  {ratio:8.4f}  {name}")


if __name__ == "__main__":
    main()
