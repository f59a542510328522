"""NominalConfig variants on the quality benchmark's dev set: open-loop IK F1, optionally MPC F1.

Dev chunks only (`params.yaml` quality.dev; the holdout is never tuned on). For
each dev chunk (first `--steps` steps) and each variant (a JSON object of
`NominalConfig` overrides; an `ik` / `fingering` entry overrides `IKConfig` /
`FingeringCosts` fields) it plans
the IK nominal with its open-loop search (`envs.control.nominal.nominal_trajectory`)
and prints the search's F1; with `--mpc`, it also optimises that nominal with the
default `MPCConfig` (seed 0) and prints the MPC's F1 (`alt` in a variant: with the
search's other candidates as alternatives; `alts`, a list of override objects: with the
nominals of those configs, planned without search, as alternatives; `mpc`: `MPCConfig`
overrides). Results are appended per (chunk,
variant) to `--out` (JSON lines) and reused by a rerun. Issue 18's choice of
`align_tolerance_*` and `prepare_steps` came from:

    python benchmarks/nominal_dev.py --out nominal.jsonl --variants \
        '{"base": {"align_tolerance_x": 0.015, "align_tolerance_y": 0.005, "prepare_steps": 10},
          "tol": {"prepare_steps": 10}, "prep20": {"prepare_steps": 20}, "default": {}}'
    python benchmarks/nominal_dev.py --out mpc.jsonl --mpc --chunks 3,5,6,10 \
        --variants '{"default": {}, "alt": {"alt": true}}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np


def variant_config(overrides: dict):
    from envs.control.fingering import FingeringCosts
    from envs.control.ik import IKConfig
    from envs.control.nominal import NominalConfig

    overrides = {k: v for k, v in overrides.items() if k not in ("alt", "alts", "mpc")}
    if "ik" in overrides:
        overrides["ik"] = IKConfig(**overrides["ik"])
    if "fingering" in overrides:
        overrides["fingering"] = FingeringCosts(**overrides["fingering"])
    return replace(NominalConfig(), **overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", required=True, help="JSON: name -> NominalConfig overrides")
    parser.add_argument("--steps", type=int, default=200, help="first N steps of each chunk")
    parser.add_argument("--chunks", help="comma-separated indices into quality.dev (default: all)")
    parser.add_argument("--mpc", action="store_true", help="also optimise each nominal with the default MPC")
    parser.add_argument("--out", required=True, help="JSON lines, one per (chunk, variant); reused by a rerun")
    args = parser.parse_args()

    from benchmarks.quality_set import load_chunk, load_quality_set, select
    from envs.control.mpc import optimise_trajectory
    from envs.control.mpc_config import MPCConfig
    from envs.control.nominal import clear_nominal_cache, nominal_trajectory
    from envs.piano.config import EnvConfig

    try:
        variants = json.loads(args.variants)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--variants: not JSON ({exc})") from None
    entries = select(load_quality_set()[0], "dev", None)
    if args.chunks:
        entries = [entries[int(i)] for i in args.chunks.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[(row["chunk"], row["variant"])] = row
    for entry in entries:
        chunk = load_chunk(entry, out.parent / "written", args.steps)
        for name, overrides in variants.items():
            row = done.get((entry.spec, name))
            if row is None:
                started = time.process_time()
                trajectory = nominal_trajectory(chunk, EnvConfig(), variant_config(overrides))
                row = {"chunk": entry.spec, "variant": name, "f1": trajectory.search[0][1] if trajectory.search else None,
                       "chosen": trajectory.search[0][0] if trajectory.search else None,
                       "cpu_s": round(time.process_time() - started, 1)}
                if args.mpc:
                    alternatives = list(trajectory.alternatives) if overrides.get("alt") else []
                    for extra in overrides.get("alts", []):  # more nominals (no search) as alternatives
                        config = replace(variant_config({**overrides, **extra}), search=False)
                        alternatives.append(nominal_trajectory(chunk, EnvConfig(), config).actions)
                    mpc_config = replace(MPCConfig(), **overrides.get("mpc", {}))
                    result = optimise_trajectory(chunk, EnvConfig(), trajectory.actions, mpc_config, 0,
                                                 alternatives=alternatives)
                    row.update(mpc_f1=result.metrics["f1"], mpc_recall=result.metrics["recall"],
                               mpc_cpu_s=round(result.cpu_seconds, 1))
                clear_nominal_cache()
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                done[(entry.spec, name)] = row
            print(f"{entry.spec:50s} {name:12s} F1 {row['f1']:.3f}"
                  + (f"  MPC F1 {row['mpc_f1']:.3f}" if "mpc_f1" in row else ""), flush=True)
    print("\nmeans over the chunks every variant has:")
    chunks = [e.spec for e in entries]
    for name in variants:
        keys = [c for c in chunks if all((c, v) in done for v in variants)]
        if keys:
            f1 = np.mean([done[(c, name)]["f1"] for c in keys])
            mpc = [done[(c, name)].get("mpc_f1") for c in keys]
            extra = f"  MPC F1 {np.mean(mpc):.3f}" if all(m is not None for m in mpc) else ""
            print(f"{name:12s} n={len(keys):2d} open-loop F1 {f1:.3f}{extra}")


if __name__ == "__main__":
    main()
