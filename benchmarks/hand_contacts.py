"""Which parts of the two hands touch while a specialist plays (the ``jam`` cause of envs/piano/failure.py).

Reads the noise-free actions `benchmarks/specialist_quality.py` saved for one
kind and settings tag, replays them (`envs.piano.trace.replay_actions`) and counts,
per chunk, the steps in which the hands touch, split by the parts in contact
(`envs.piano.trace.HAND_PARTS`: arm-arm = forearm, wrist or palm of both hands,
arm-finger, finger-finger), and the same split over the missed notes whose
cause is ``jam``.

    python benchmarks/hand_contacts.py --set all --kind ik --tag dt0.002
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", default="all", help="dev | holdout | all")
    parser.add_argument("--kind", default="ik")
    parser.add_argument("--tag", default="dt0.002", help="settings tag of the results folder (e.g. dt0.005)")
    parser.add_argument("--out", type=Path, help="the quality benchmark's reports (default: quality.reports_dir)")
    args = parser.parse_args(argv)

    from benchmarks.quality_set import load_chunk, load_quality_set, select
    from envs.piano.config import EnvConfig
    from envs.piano.trace import HAND_PARTS, replay_actions

    listed, section = load_quality_set(args.params)
    out = args.out or Path(section["reports_dir"])
    rows = []
    for entry in select(listed, args.set, None):
        path = out / "results" / args.kind / args.tag / f"{entry.slug}.json"
        if not path.exists():
            print(f"{entry.spec}: no result at {path}, skipped", file=sys.stderr)
            continue
        result = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as data:
            actions = np.array(data["actions"])
        trace = replay_actions(load_chunk(entry, Path(section["work_dir"]) / "written"),
                               EnvConfig(physics_timestep=result["physics_timestep"]), actions)
        parts = trace.hand_hand_parts
        jams = [m for m in result["failures"]["noise_free"]["missed"] if m["cause"] == "jam"]
        jam_parts = np.zeros(len(HAND_PARTS), dtype=int)
        for m in jams:
            jam_parts += parts[m["on"]:m["off"] + 1].any(axis=0)
        rows.append({"chunk": entry.spec, "set": entry.set, "steps": trace.n_steps,
                     "hand_hand_steps": int(trace.hand_hand.sum()),
                     "steps_by_parts": dict(zip(HAND_PARTS, parts.sum(axis=0).tolist())),
                     "jam_notes": len(jams), "jam_notes_by_parts": dict(zip(HAND_PARTS, jam_parts.tolist()))})
        print(f"{entry.spec}: done", file=sys.stderr, flush=True)
    lines = [f"## Hand-hand contacts of the {args.kind} noise-free runs ({args.tag})", "",
             "Steps with any hand-hand contact, then steps with each kind of contact (arm: forearm, wrist or "
             "palm); the same for the missed notes classified jam (a note counts for each kind that occurred "
             "while it was due).", "",
             "| set | chunk | steps | hand-hand steps | arm-arm | arm-finger | finger-finger | jam notes | "
             "arm-arm | arm-finger | finger-finger |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, j = r["steps_by_parts"], r["jam_notes_by_parts"]
        lines.append(f"| {r['set']} | {r['chunk']} | {r['steps']} | {r['hand_hand_steps']} | "
                     + " | ".join(str(s[p]) for p in HAND_PARTS) + f" | {r['jam_notes']} | "
                     + " | ".join(str(j[p]) for p in HAND_PARTS) + " |")
    total = {p: sum(r["jam_notes_by_parts"][p] for r in rows) for p in HAND_PARTS}
    lines += ["", f"Jam notes: {sum(r['jam_notes'] for r in rows)}; with arm-arm contact {total['arm_arm']}, "
              f"arm-finger {total['arm_finger']}, finger-finger {total['finger_finger']}.", ""]
    report = "\n".join(lines)
    print(report)
    (out / f"hand_contacts_{args.kind}_{args.tag}.md").write_text(report)
    (out / f"hand_contacts_{args.kind}_{args.tag}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
