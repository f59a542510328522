"""Sampling MPC around the OT-IK nominal on the dev chunks: F1 open loop vs MPC, and its CPU cost.

Per chunk (the first chunk of each dev song, or its first `--steps` steps):
the IK nominal (`envs.control.nominal`, with its open-loop search) played open
loop (the baseline, measured in the same run), the MPC's optimised trajectory
(`envs.control.mpc`) replayed noise-free, and the rollouts the `mpc` specialist
stores (`tasks.specialist_mpc.noisy_replay_metrics`: the rollout noise of
`tasks.rollouts`, on the lean path) at each `--noise`; precision and recall of
the MPC, and process CPU seconds (IK nominal incl. its search, and the MPC).
Resumable: each chunk's result is a JSON file under `--out/<tag>/` and the MPC
checkpoints there while it runs; a rerun skips finished chunks.

    nice -n 10 python benchmarks/mpc_dev.py                           # all dev chunks, defaults
    nice -n 10 python benchmarks/mpc_dev.py --chunks 6,9 --steps 200 --tag quick --config '{"n_samples": 31}'
    python benchmarks/mpc_dev.py --report benchmarks/reports/mpc_dev.md   # table of the finished chunks

The holdout chunks and the pieces reserved for the independent evaluation are
refused (never tune on them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the IK's small QPs; one core
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

DEV = (  # the first chunk of each (issue 18's dev set)
    "music21:leadSheet/fosterBrownHair.mxl", "robopianist:CMajorScaleTwoHands", "robopianist:TwinkleTwinkleRousseau",
    "music21:bach/bwv846.mxl", "music21:bach/bwv10.7", "music21:schumann_robert/dichterliebe_no2.xml",
    "robopianist:NocturneRousseau", "music21:verdi/laDonnaEMobile.mxl", "music21:schubert/Lindenbaum.xml",
    "music21:schumann_clara/polonaise_op1n2",
)
REFUSED = (  # holdout chunks and reserved pieces: not to be run here
    "crossing_study", "corelli/opus3no1/1grave", "schoenberg/opus19/movement6", "handel/rinaldo/Lascia_chio_pianga",
    "bach/bwv269", "polonaise_op1n4", "beach/prayer_of_a_tired_child", "polonaise_op1n3", "joplin/maple_leaf_rag",
    "chopin/mazurka06-2", "mozart/k545", "polonaise_op1n1", "cpebach/h186",
)
ROLLOUT_SEEDS = 8  # stored rollouts simulated per noise level (seeds 0..7, as tasks.rollouts)


def slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", ref.split(":", 1)[-1]).strip("_")


def select(spec: str | None) -> list[str]:
    if not spec:
        return list(DEV)
    out = []
    for item in spec.split(","):
        ref = DEV[int(item)] if item.strip().isdigit() else item.strip()
        if any(name in ref for name in REFUSED):
            raise SystemExit(f"{ref}: a holdout / reserved piece; this benchmark runs on the dev set only")
        out.append(ref)
    return out


def nominal_for(chunk, env_config, cache: Path) -> tuple[np.ndarray, float]:
    """The IK nominal of the whole chunk (with search) and its CPU seconds, cached in `cache`."""
    from envs.control.nominal import clear_nominal_cache, nominal_trajectory

    if cache.exists():
        with np.load(cache) as data:
            return np.array(data["actions"]), float(data["cpu"])
    clear_nominal_cache()
    start = time.process_time()
    actions = nominal_trajectory(chunk, env_config).actions
    cpu = time.process_time() - start
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, actions=actions, cpu=cpu)
    return actions, cpu


def run_chunk(ref: str, args, config, out: Path) -> dict:
    from envs.control.mpc import optimise_trajectory, replay_metrics
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig
    from envs.piano.lean import LeanPiano
    from tasks.specialist import ResidualSpecialistConfig
    from tasks.specialist_mpc import MPCSpecialistConfig, closed_loop_actions, noisy_replay_metrics

    env_config = EnvConfig(physics_timestep=args.dt)
    chunk = make_chunks(load_song(ref))[0]
    nominal, ik_cpu = nominal_for(chunk, env_config, Path(args.out) / "nominal" / f"{slug(ref)}-dt{args.dt:g}.npz")
    if args.steps:
        chunk = replace(chunk, n_steps=min(args.steps, chunk.n_steps))
    nominal = nominal[: chunk.n_steps]
    lean = LeanPiano(chunk, env_config, n_lanes=1)
    base = replay_metrics(lean, nominal)
    result = optimise_trajectory(chunk, env_config, nominal, config, seed=args.seed, lean=lean,
                                 checkpoint=out / f"{slug(ref)}.progress.npz")
    scale = ResidualSpecialistConfig().task.scale
    stored = {}
    for noise in args.noise:
        runs = noisy_replay_metrics(lean, result.actions, scale, noise, range(ROLLOUT_SEEDS))
        f1 = [r["f1"] for r in runs]
        stored[f"{noise:g}"] = {"f1": float(np.mean(f1)), "f1_sd": float(np.std(f1)), "f1_min": float(np.min(f1))}
    closed = None
    if args.closed_loop:  # the mpc kind's default rollouts: the MPC along the trajectory under the noise
        specialist = MPCSpecialistConfig.from_dict({**config.as_dict(), **json.loads(args.rollout_config)})
        runs, cpu = [], []
        for seed in range(args.closed_loop):
            run = closed_loop_actions(chunk, env_config, result.actions, specialist, scale, seed, lean=lean)
            runs.append(run.metrics["f1"])
            cpu.append(run.cpu_seconds)
        closed = {"noise": specialist.rollout_noise, "tracking": specialist.tracking.as_dict(),
                  "f1": float(np.mean(runs)), "f1_sd": float(np.std(runs)), "f1_runs": runs,
                  "cpu_s_per_rollout": round(float(np.mean(cpu)), 1)}
    from envs.control.mpc import WINNERS

    return {
        "ref": ref, "chunk": 0, "steps": chunk.n_steps, "dt": args.dt, "config": config.as_dict(), "seed": args.seed,
        "nominal": base, "mpc": result.metrics, "replay": result.replay, "stored": stored, "closed_loop": closed,
        "cut": args.steps, "cpu_s": {"ik": round(ik_cpu, 1), "mpc": round(result.cpu_seconds, 1)},  # ik: whole chunk
        "winners": {name: int((result.winner == i).sum()) for i, name in enumerate(WINNERS)},
        "iteration_log": result.iteration_log,
    }


def report(folder: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    rows.sort(key=lambda r: DEV.index(r["ref"]) if r["ref"] in DEV else len(DEV))
    if not rows:
        raise SystemExit(f"{folder}: no finished chunks")
    noises = sorted({n for r in rows for n in r["stored"]}, key=float)
    head = ("| chunk | steps | F1 nominal | F1 MPC | F1 stored, closed loop | "
            + " | ".join(f"F1 stored, open loop ({n})" for n in noises)
            + " | P MPC | R MPC | CPU-s IK | CPU-s MPC | CPU-s per closed-loop rollout |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        stored = " | ".join(f"{r['stored'][n]['f1']:.3f} ± {r['stored'][n]['f1_sd']:.3f}" if n in r["stored"] else "-"
                            for n in noises)
        closed = r.get("closed_loop")
        cl = f"{closed['f1']:.3f} ± {closed['f1_sd']:.3f}" if closed else "-"
        cl_cpu = f"{closed['cpu_s_per_rollout']:.0f}" if closed else "-"
        lines.append(f"| {r['ref']}:0 | {r['steps']} | {r['nominal']['f1']:.3f} | {r['replay']['f1']:.3f} | {cl} | "
                     f"{stored} | {r['mpc']['precision']:.3f} | {r['mpc']['recall']:.3f} | {r['cpu_s']['ik']:.0f} | "
                     f"{r['cpu_s']['mpc']:.0f} | {cl_cpu} |")
    f1 = np.array([r["replay"]["f1"] for r in rows])
    base = np.array([r["nominal"]["f1"] for r in rows])
    cpu = np.array([r["cpu_s"]["ik"] + r["cpu_s"]["mpc"] for r in rows])
    per_550 = np.array([r["cpu_s"]["ik"] + r["cpu_s"]["mpc"] * 550 / r["steps"] for r in rows])  # ik: whole chunk
    lines += ["", f"{len(rows)} chunks: median F1 nominal {np.median(base):.3f} -> MPC {np.median(f1):.3f} "
              f"(mean {base.mean():.3f} -> {f1.mean():.3f}, ratio of means {f1.mean() / max(base.mean(), 1e-9):.2f}); "
              f"F1 >= 0.75 on {(f1 >= 0.75).sum()}/{len(rows)}; CPU-s per chunk median {np.median(cpu):.0f}, "
              f"max {cpu.max():.0f} (per 550 steps: max {per_550.max():.0f})."]
    config = rows[0]["config"]
    lines += ["", f"MPCConfig: `{json.dumps(config)}`, dt {rows[0]['dt']}, seed {rows[0]['seed']}."]
    return "\n".join(lines) + "\n"


def compare(out: Path, tags: list[str]) -> str:
    """One line per tag: each chunk's noise-free / stored (open loop, noise 0.05) / closed-loop F1."""
    tables = {tag: {json.loads(p.read_text())["ref"]: json.loads(p.read_text()) for p in (out / tag).glob("*.json")}
              for tag in tags}
    refs = [ref for ref in DEV if any(ref in rows for rows in tables.values())]
    head = "| tag | MPCConfig (differences from the defaults) | " + " | ".join(f"{slug(r)}: replay / open 0.05 / closed"
                                                                               for r in refs) + " | CPU-s MPC (mean) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    from envs.control.mpc_config import MPCConfig

    defaults = MPCConfig().as_dict()
    for tag, rows in tables.items():
        if not rows:
            continue
        config = next(iter(rows.values()))["config"]
        diff = {k: v for k, v in config.items() if k in defaults and defaults[k] != (tuple(v) if isinstance(v, list) else v)}
        cells = []
        for ref in refs:
            r = rows.get(ref)
            if r is None:
                cells.append("-")
                continue
            closed = r.get("closed_loop")
            open_loop = r["stored"].get("0.05")
            cells.append(f"{r['replay']['f1']:.2f} / {open_loop['f1']:.2f} / " if open_loop else f"{r['replay']['f1']:.2f} / - / ")
            cells[-1] += f"{closed['f1']:.2f}" if closed else "-"
        cpu = np.mean([r["cpu_s"]["mpc"] for r in rows.values()])
        lines.append(f"| {tag} | `{json.dumps(diff)}` | " + " | ".join(cells) + f" | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", help="comma-separated dev indices (0-9) or refs; default: all dev chunks")
    parser.add_argument("--steps", type=int, default=None, help="only the first N steps of each chunk")
    parser.add_argument("--dt", type=float, default=0.005, help="physics timestep (RP1M / robopianist: 0.005)")
    parser.add_argument("--config", default="{}", help="MPCConfig fields as JSON (default: MPCConfig())")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", default="0.05,0.1", help="rollout noise levels to simulate (comma-separated)")
    parser.add_argument("--closed-loop", type=int, default=2, metavar="N",
                        help="closed-loop rollouts (the mpc kind's default) to run per chunk (0: none)")
    parser.add_argument("--rollout-config", default="{}",
                        help="MPCSpecialistConfig rollout fields as JSON, e.g. "
                             "'{\"rollout_noise\": 0.05, \"rollout_planner\": {\"n_samples\": 15}}'")
    parser.add_argument("--tag", default="default", help="result folder name under --out")
    parser.add_argument("--out", default=".cache/mpc_dev", help="results folder (git-ignored)")
    parser.add_argument("--report", metavar="MD", help="only write the table of --tag's finished chunks to MD")
    parser.add_argument("--compare", metavar="TAGS", help="with --report: append a table comparing these tags")
    args = parser.parse_args()
    args.noise = [float(x) for x in args.noise.split(",") if x]
    folder = Path(args.out) / args.tag
    if args.report:
        text = report(folder)
        if args.compare:
            text += "\nAll runs (F1; replay: noise-free, open: open-loop replay with rollout noise 0.05, " \
                    "closed: closed-loop rollouts):\n\n" + compare(Path(args.out), args.compare.split(","))
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text)
        print(text)
        return
    from envs.control.mpc_config import MPCConfig

    config = MPCConfig.from_dict(json.loads(args.config))
    folder.mkdir(parents=True, exist_ok=True)
    for ref in select(args.chunks):
        path = folder / f"{slug(ref)}.json"
        if path.exists():
            row = json.loads(path.read_text())
            if (row["config"], row.get("cut"), row["dt"], row["seed"]) == (config.as_dict(), args.steps, args.dt, args.seed):
                print(f"{ref}: done (F1 {row['nominal']['f1']:.3f} -> {row['replay']['f1']:.3f})", flush=True)
                continue
        row = run_chunk(ref, args, config, folder)
        path.write_text(json.dumps(row, indent=1))
        stored = ", ".join(f"{n}: {v['f1']:.3f}" for n, v in row["stored"].items())
        print(f"{ref}: {row['steps']} steps, F1 nominal {row['nominal']['f1']:.3f} -> MPC {row['replay']['f1']:.3f} "
              f"(P {row['mpc']['precision']:.3f} R {row['mpc']['recall']:.3f}; stored {stored}); CPU-s IK "
              f"{row['cpu_s']['ik']:.0f} MPC {row['cpu_s']['mpc']:.0f}; wins {row['winners']}", flush=True)
    print(report(folder))


if __name__ == "__main__":
    main()
