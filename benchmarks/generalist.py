"""One-core inference rate per decision of the generalist benchmark methods (issue 21).

For each method (RP1M's Diffusion Policy as the baseline, PianoMime's Table 1
variants, flow matching), in its own subprocess pinned to CPU 0 (`taskset -c
0`, single-threaded XLA): the method's config (paper architecture and
denoising steps unless `--scale tiny`), trained for one step on a synthetic
RP1M-shaped dataset (latency does not depend on the weights), then the median
wall time and the CPU time of `predict_chunk` on a batch of 1. A decision
returns `action_horizon` actions, so actions/s = Ta / latency; the ratio to 20
Hz (RP1M's control rate) says whether it keeps up. Ratios are against the
Diffusion Policy measured in the same run. Run with `nice` on a shared machine.

    python benchmarks/generalist.py [--scale paper|tiny] [--methods LABEL ...] [--calls 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from benchmarks.policy_speed import ACTION_DIM, CONTROL_HZ, OBS_DIM, SINGLE_CORE_XLA_FLAGS, synthetic_dataset, time_predict  # noqa: E402

# Step counts of PianoMime App. H (80 high / 50 low) are the defaults; "fewer" is the configurable
# cheaper setting. Batch sizes and SDF steps only shorten the one training step.
TRAIN_ONLY = {"pianomime": {"batch_size": 8, "sdf_max_steps": 5}, "flow_matching": {"batch_size": 8},
              "diffusion": {"batch_size": 8}}
FEWER = {"high_inference_steps": 10, "low_inference_steps": 10}
METHODS = {
    "Diffusion Policy": ("diffusion", {}),
    "Two-stage Diff": ("pianomime", {}),
    "Two-stage Diff (10+10 steps)": ("pianomime", FEWER),
    "Two-stage Diff-res": ("pianomime", {"low_level": "residual"}),
    "Two-stage Diff-res (10+10 steps)": ("pianomime", {"low_level": "residual", **FEWER}),
    "Two-stage Diff w/o SDF": ("pianomime", {"goal_encoding": "binary"}),
    "One-stage Diff": ("pianomime", {"stages": 1}),
    "Two-stage BeT": ("pianomime", {"generator": "bet"}),
    "Flow Matching": ("flow_matching", {}),
}
# The tiny scale of tests/flows/test_benchmark.py.
TINY = {
    "pianomime": {"down_dims": (16,), "n_groups": 4, "kernel_size": 3, "diffusion_step_embed_dim": 16,
                  "tcn_channels": (8,), "num_train_timesteps": 20, "high_inference_steps": 4,
                  "low_inference_steps": 4, "bet_layers": 1, "bet_heads": 2, "bet_embed_dim": 16, "bet_bins": 8},
    "flow_matching": {"down_dims": (16,), "n_groups": 4, "kernel_size": 3, "diffusion_step_embed_dim": 16,
                      "num_inference_steps": 4},
    "diffusion": {"down_dims": (16, 32), "n_groups": 4, "diffusion_step_embed_dim": 16, "num_train_timesteps": 20,
                  "num_inference_steps": 4},
}


def worker(label: str, scale: str, calls: int) -> dict:
    import numpy as np

    from agents.common.policy import get_policy
    from tasks.benchmark.config import tuplify

    policy_name, changes = METHODS[label]
    _, config_cls, train_fn = get_policy(policy_name)
    fields = {**TRAIN_ONLY[policy_name], **(TINY[policy_name] if scale == "tiny" else {}), **changes}
    if scale == "tiny" and "steps" in label:
        fields.update(high_inference_steps=2, low_inference_steps=2)
    config = config_cls(**tuplify(fields))
    dataset = synthetic_dataset(config.spec_for(OBS_DIM, ACTION_DIM), n_episodes=2, n_steps=60)
    started = time.perf_counter()
    policy, _ = train_fn(dataset, config, steps=1, seed=0)
    setup = time.perf_counter() - started
    obs, _ = dataset.get_batch(np.array([len(dataset) // 2]))
    latency = time_predict(policy, obs, calls)
    steps = {k: getattr(config, k) for k in ("high_inference_steps", "low_inference_steps", "num_inference_steps")
             if hasattr(config, k)}
    if policy_name == "pianomime" and config.generator == "bet":
        steps = {}  # one forward pass per level
    elif policy_name == "pianomime" and config.stages == 1:
        steps = {"low_inference_steps": config.low_inference_steps}  # One-stage samples with these
    return {"label": label, "policy": policy_name, "action_horizon": policy.spec.action_horizon,
            "setup_s": setup, "affinity": sorted(os.sched_getaffinity(0)), "steps": steps, **latency}


def run(label: str, args) -> dict:
    env = dict(os.environ, XLA_FLAGS=SINGLE_CORE_XLA_FLAGS, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, os.path.abspath(__file__), "--worker", label, "--scale", args.scale,
               "--calls", str(args.calls)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"label": label, "error": f"not finished after {args.timeout:.0f} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"label": label, "error": f"exit {out.returncode}: {out.stderr.strip()[-800:]}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), help="labels of METHODS")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.scale, args.calls)))
        return
    rows = [run(label, args) for label in args.methods]
    base = next((r for r in rows if r["label"] == "Diffusion Policy" and "error" not in r), None)
    print(f"scale {args.scale}, batch 1, one core (CPU 0, single-threaded XLA), {args.calls} timed calls")
    print("| method | denoising steps | Ta | ms/decision (wall, median) | CPU ms/decision | decisions/s (CPU) "
          "| actions/s / 20 Hz | CPU time x Diffusion Policy |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['label']} | error: {row['error'][:200]} |")
            continue
        steps = "+".join(str(v) for v in row["steps"].values()) or "-"
        ratio = f"{row['cpu_ms'] / base['cpu_ms']:.1f}" if base else "-"
        print(f"| {row['label']} | {steps} | {row['action_horizon']} | {row['median_ms']:.1f} | {row['cpu_ms']:.1f} "
              f"| {1e3 / row['cpu_ms']:.1f} | {row['action_horizon'] * 1e3 / row['cpu_ms'] / CONTROL_HZ:.2f} "
              f"| {ratio} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
