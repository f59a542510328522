"""Physics timestep fidelity: the OT-IK controller and key contacts at 0.002 s vs 0.005 s (issue 18).

RP1M ran robopianist's default physics timestep, 0.005 s (10 substeps per
0.05 s control step); this project defaults to 0.002 s (25 substeps). Run on
the dev set only, after `benchmarks/specialist_quality.py --kind ik` at both
timesteps (`--physics-timestep 0.002` and `0.005`), whose saved noise-free
episodes it reads. Per chunk:

- F1 of the ik controller planned and played at each timestep, noise-free and
  as stored (mean of the stored rollouts), from those results;
- the same action sequence (the noise-free actions planned at one timestep)
  played at the other: agreement of the pressed-key masks (cells equal,
  Jaccard of the pressed cells), press onsets matched within 3 steps and their
  shift, key joint trajectories (RMS and max difference, in shares of a key's
  travel), fingertip divergence, and contact counts at each timestep;
- CPU-seconds per episode at each timestep, measured in this run (the ratio is
  the speed cost of 0.002 s).

    python benchmarks/timestep_fidelity.py               # dev set, tables + datasets/reports/.../timestep.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

DTS = (0.002, 0.005)
ONSET_WINDOW = 3  # steps: a press onset in one run matches one of the same key within this many steps


def onsets(pressed: np.ndarray) -> list[tuple[int, int]]:
    """(step, key) of every press onset (key up at t-1, down at t)."""
    prev = np.vstack([np.zeros((1, pressed.shape[1]), bool), pressed[:-1]])
    return [tuple(x) for x in np.argwhere(pressed & ~prev)]


def compare(a: dict, b: dict, key_travel: np.ndarray) -> dict:
    """How far two traces of one action sequence diverge (a: reference, b: other timestep)."""
    pa, pb = a["pressed"].astype(bool), b["pressed"].astype(bool)
    union = (pa | pb).sum()
    on_a, on_b = onsets(pa), onsets(pb)
    by_key: dict[int, list[int]] = {}
    for t, k in on_b:
        by_key.setdefault(k, []).append(t)
    shifts = []
    for t, k in on_a:
        near = [u - t for u in by_key.get(k, []) if abs(u - t) <= ONSET_WINDOW]
        if near:
            shifts.append(min(near, key=abs))
    qa, qb = a["key_qpos"] / key_travel, b["key_qpos"] / key_travel
    dq = np.abs(qa - qb)
    tips = np.linalg.norm(a["fingertips"] - b["fingertips"], axis=-1)  # (T, 10)
    far = np.flatnonzero(tips.max(axis=1) > 0.005)
    differ = np.flatnonzero((pa != pb).any(axis=1))
    return {
        "pressed_cells_equal": round(float(np.mean(pa == pb)), 5),
        "pressed_jaccard": round(float((pa & pb).sum() / union), 4) if union else 1.0,
        "first_step_pressed_differ": int(differ[0]) if len(differ) else None,
        "onsets": [len(on_a), len(on_b)],
        "onsets_matched_share": round(len(shifts) / len(on_a), 4) if on_a else 1.0,
        "onset_shift_mean_steps": round(float(np.mean(shifts)), 3) if shifts else None,
        "onset_shift_abs_mean_steps": round(float(np.mean(np.abs(shifts))), 3) if shifts else None,
        "key_qpos_rms_travel": round(float(np.sqrt(np.mean(dq ** 2))), 4),
        "key_qpos_max_travel": round(float(dq.max()), 4),
        "fingertip_mean_mm": round(1e3 * float(tips.mean()), 2),
        "fingertip_max_mm": round(1e3 * float(tips.max()), 1),
        "first_step_fingertip_5mm": int(far[0]) if len(far) else None,
        "contacts_per_step": [round(float(a["n_contacts"].mean()), 2), round(float(b["n_contacts"].mean()), 2)],
        "hand_hand_steps": [int(a["hand_hand"].sum()), int(b["hand_hand"].sum())],
        "edge_contact_cells": [int(a["edge_contact"].sum()), int(b["edge_contact"].sum())],
    }


def _trace_arrays(trace) -> dict:
    return {name: getattr(trace, name) for name in ("pressed", "goal", "key_qpos", "fingertips", "n_contacts",
                                                    "hand_hand", "edge_contact")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--chunks", help="comma-separated SONG_REF:INDEX (default: the dev set)")
    parser.add_argument("--out", type=Path, help="the quality benchmark's reports (default: quality.reports_dir)")
    args = parser.parse_args(argv)

    from benchmarks.quality_set import load_chunk, load_quality_set, select
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env
    from envs.piano.trace import replay_actions
    from envs.piano.metrics import key_press_metrics

    listed, section = load_quality_set(args.params)
    chunks = select(listed, "dev", args.chunks.split(",") if args.chunks else None)
    held = [c.spec for c in chunks if c.set == "holdout"]
    if held:
        raise SystemExit(f"{held}: holdout chunks are evaluated only to report, not for this choice (use dev)")
    out = args.out or Path(section["reports_dir"])
    work = Path(section["work_dir"])
    rows = []
    travel = None
    for entry in chunks:
        loaded = {}
        for dt in DTS:
            path = out / "results" / "ik" / f"dt{dt:g}" / f"{entry.slug}.json"
            if not path.exists():
                raise SystemExit(f"{path}: missing; run benchmarks/specialist_quality.py --kind ik --set dev "
                                 f"--physics-timestep {dt:g} first")
            with np.load(path.with_suffix(".npz")) as data:
                loaded[dt] = (json.loads(path.read_text()), {k: data[k] for k in data.files})
        chunk = load_chunk(entry, work / "written")
        if travel is None:
            env = make_env(chunk, EnvConfig(), seed=0)
            travel = np.array(env.physics.bind(env.task.piano.joints).range[:, 1])
            env.close()
        row = {"chunk": entry.spec, "steps": chunk.n_steps, "f1": {}, "same_actions": {}, "cpu_s_per_episode": {}}
        for dt in DTS:
            result = loaded[dt][0]
            row["f1"][f"{dt:g}"] = {"noise_free": result["noise_free"]["f1"], "stored": result["stored"]["f1"],
                                    "stored_sd": result["stored"]["f1_sd"], "fit_cpu_s": result["cpu_s"]["fit"]}
        for planned, other in ((DTS[0], DTS[1]), (DTS[1], DTS[0])):
            actions = loaded[planned][1]["actions"]
            started = time.process_time()
            trace = replay_actions(chunk, EnvConfig(physics_timestep=other), actions)
            row["cpu_s_per_episode"][f"{other:g}"] = round(time.process_time() - started, 2)
            replayed = _trace_arrays(trace)
            reference = loaded[planned][1]
            row["same_actions"][f"planned {planned:g}, played {planned:g} vs {other:g}"] = {
                "f1": [round(key_press_metrics(reference["goal"], reference["pressed"]).f1, 4),
                       round(key_press_metrics(trace.goal, trace.pressed).f1, 4)],
                **compare(reference, replayed, travel)}
        rows.append(row)
        print(f"{entry.spec}: done", flush=True)
    report = render(rows)
    print()
    print(report)
    (out / "timestep.md").write_text(report)
    (out / "timestep.json").write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {out / 'timestep.md'} and {out / 'timestep.json'}")
    return 0


def render(rows: list[dict]) -> str:
    a, b = (f"{dt:g}" for dt in DTS)
    lines = [f"## F1 of the ik controller planned and played at {a} s and {b} s (dev set)", "",
             f"| chunk | noise-free {a} | noise-free {b} | stored {a} | stored {b} | fit CPU-s {a} | fit CPU-s {b} |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        fa, fb = r["f1"][a], r["f1"][b]
        lines.append(f"| {r['chunk']} | {fa['noise_free']:.3f} | {fb['noise_free']:.3f} | {fa['stored']:.3f} "
                     f"({fa['stored_sd']:.3f}) | {fb['stored']:.3f} ({fb['stored_sd']:.3f}) | {fa['fit_cpu_s']:.0f} "
                     f"| {fb['fit_cpu_s']:.0f} |")
    for name, key in (("mean", np.mean), ("median", np.median)):
        lines.append(f"| {name} | " + " | ".join(
            f"{key([r['f1'][dt][field] for r in rows]):.3f}" for field in ("noise_free",) for dt in (a, b)) + " | "
            + " | ".join(f"{key([r['f1'][dt]['stored'] for r in rows]):.3f}" for dt in (a, b)) + " | "
            + " | ".join(f"{key([r['f1'][dt]['fit_cpu_s'] for r in rows]):.0f}" for dt in (a, b)) + " |")
    lines += ["", "## The same action sequence at both timesteps", "",
              "Pressed cells equal: share of (step, key) cells with the same pressed state; onsets matched: press "
              f"onsets of the reference run with one of the same key within {ONSET_WINDOW} steps in the other "
              "(shift: other - reference, steps); key qpos: difference in shares of a key's travel; contacts per step "
              "and hand-hand steps: reference / other.", "",
              "| chunk | actions | F1 ref / other | cells equal | Jaccard | first differ | onsets matched | shift "
              "(abs) | key qpos RMS / max | fingertip mean / max mm | contacts/step | hand-hand steps |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for label, c in r["same_actions"].items():
            shift = "-" if c["onset_shift_mean_steps"] is None else \
                f"{c['onset_shift_mean_steps']:+.2f} ({c['onset_shift_abs_mean_steps']:.2f})"
            lines.append(f"| {r['chunk']} | {label} | {c['f1'][0]:.3f} / {c['f1'][1]:.3f} | "
                         f"{c['pressed_cells_equal']:.4f} | {c['pressed_jaccard']:.3f} | {c['first_step_pressed_differ']} | "
                         f"{100 * c['onsets_matched_share']:.0f}% of {c['onsets'][0]} | {shift} | "
                         f"{c['key_qpos_rms_travel']:.3f} / {c['key_qpos_max_travel']:.2f} | "
                         f"{c['fingertip_mean_mm']:.1f} / {c['fingertip_max_mm']:.0f} | "
                         f"{c['contacts_per_step'][0]} / {c['contacts_per_step'][1]} | "
                         f"{c['hand_hand_steps'][0]} / {c['hand_hand_steps'][1]} |")
    cpu = {dt: np.mean([r["cpu_s_per_episode"][dt] for r in rows]) for dt in (a, b)}
    lines += ["", f"CPU-seconds per replayed episode (mean over chunks, this run): {a} s: {cpu[a]:.1f}, {b} s: "
              f"{cpu[b]:.1f}, ratio {cpu[a] / cpu[b]:.2f}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
