"""How the nominal's open-loop search should score its candidates (issue 18, dev set only).

For each dev chunk (first `--steps` steps), every candidate of the search (`SEARCH_VARIANTS`) is
played noise-free and with noisy rollouts of the `ik` kind's noise (`tasks.specialist_mpc.
rollout_actions`: the stored rollouts' arithmetic) on two disjoint seed sets, apart from the
stored rollouts' seeds: `--search-seeds` seeds (what a search could afford) and `--eval-seeds`
others (the reference: what the dataset would store). Each scoring rule picks
a candidate; the table gives the reference F1 of each pick, the pick of the reference itself
being the best any rule can do.

    python benchmarks/search_noise.py --out datasets/reports/search_noise.jsonl [--chunks 0,3]

Results are appended per chunk (a rerun resumes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="results, one JSON line per chunk (resumed)")
    parser.add_argument("--chunks", help="comma-separated indices into the dev set (default: all)")
    parser.add_argument("--steps", type=int, default=200, help="first N steps of each chunk")
    parser.add_argument("--search-seeds", type=int, default=8)
    parser.add_argument("--eval-seeds", type=int, default=16)
    args = parser.parse_args()

    from benchmarks.quality_set import load_chunk, load_quality_set, select
    from envs.control.nominal import NominalConfig, clear_nominal_cache, nominal_trajectory
    from envs.control.nominal.controller import open_loop_f1
    from envs.control.residual import ResidualConfig
    from envs.piano.config import EnvConfig
    from envs.piano.env import make_env
    from envs.piano.lean import LeanPiano
    from tasks.specialist import IK_ROLLOUT_NOISE
    from tasks.specialist_mpc import rollout_actions

    entries = select(load_quality_set()[0], "dev", None)
    if args.chunks:
        entries = [entries[int(i)] for i in args.chunks.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["chunk"]: json.loads(line) for line in out.read_text().splitlines()} if out.exists() else {}
    config = NominalConfig()  # the shipped search: every candidate's actions, the chosen one first
    scale = ResidualConfig().scale
    search_seeds = [1_000_003 + i for i in range(args.search_seeds)]
    eval_seeds = [7_000_001 + i for i in range(args.eval_seeds)]  # apart from the search's and the rollouts'
    for entry in entries:
        if entry.spec in done:
            continue
        started = time.process_time()
        chunk = load_chunk(entry, out.parent / "written", args.steps)
        trajectory = nominal_trajectory(chunk, EnvConfig(), config)
        names = [o for o, _ in trajectory.search]
        candidates = [trajectory.actions, *trajectory.alternatives]
        env = make_env(chunk, EnvConfig(), seed=0)
        spec = env.action_spec()
        lean = LeanPiano(chunk, EnvConfig(), 1, env=env)
        plays = []
        for actions in candidates:
            plays.append(actions)
            plays.extend(rollout_actions(actions, spec.minimum, spec.maximum, scale, IK_ROLLOUT_NOISE, s)
                         for s in search_seeds + eval_seeds)
        env.close()
        f1 = np.array(open_loop_f1(lean, plays)).reshape(len(candidates), 1 + len(search_seeds) + len(eval_seeds))
        row = {"chunk": entry.spec, "candidates": names, "noise_free": f1[:, 0].round(4).tolist(),
               "search": f1[:, 1: 1 + len(search_seeds)].round(4).tolist(),
               "eval": f1[:, 1 + len(search_seeds):].round(4).tolist(), "cpu_s": round(time.process_time() - started, 1)}
        clear_nominal_cache()
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done[entry.spec] = row
        print(f"{entry.spec:50s} {row['cpu_s']:.0f} CPU-s", flush=True)
    report(list(done.values()), args.search_seeds)


def report(rows: list[dict], max_seeds: int) -> None:
    """Reference F1 (mean over the eval seeds) of the candidate each rule picks, per chunk and mean."""
    rules = {"noise-free": lambda r, k: np.array(r["noise_free"])}
    for k in sorted({1, 2, 4, max_seeds}):
        if k <= max_seeds:
            rules[f"{k} seeds"] = lambda r, k, n=k: np.array(r["search"])[:, :n].mean(1)
            rules[f"nf+{k} seeds"] = lambda r, k, n=k: (np.array(r["noise_free"]) + np.array(r["search"])[:, :n].sum(1)) / (1 + n)
    rules["oracle"] = lambda r, k: np.array(r["eval"]).mean(1)
    print(f"\n{'chunk':50s} " + " ".join(f"{name:>11s}" for name in rules))
    totals = {name: [] for name in rules}
    for r in rows:
        reference = np.array(r["eval"]).mean(1)
        picks = {name: reference[int(np.argmax(rule(r, max_seeds)))] for name, rule in rules.items()}
        for name, v in picks.items():
            totals[name].append(v)
        print(f"{r['chunk']:50s} " + " ".join(f"{picks[name]:11.3f}" for name in rules))
    print(f"{'mean':50s} " + " ".join(f"{np.mean(totals[name]):11.3f}" for name in rules))


if __name__ == "__main__":
    main()
