"""Training throughput and inference latency of every registered benchmark policy (RP1M sizes).

For each policy in `agents.common.policy.policy_registry()` (bc, ibc, bc_rnn,
diffusion: whichever are registered), at its default configuration (the RP1M
Appendix B tables) with obs_dim = 1144 and action_dim = 39 (RP1M Table 3), all
through the policy contract only:

  train     samples/s of the policy's `train` on a synthetic `WindowDataset`
            with the policy's horizons: (K + N steps) - (K steps), both after a
            warm-up run that pays compilation, so set-up costs cancel.
  infer     median wall time of `predict_chunk` on a batch of 1 after warm-up
            calls, as Hz and as a ratio to the 20 Hz control rate (RP1M /
            robopianist: 0.05 s control timestep). With action horizon 1 the
            policy is asked once per control step, so Hz/20 >= 1 is real time.
  1 core    the same latency in a subprocess pinned to CPU 0 (`taskset -c 0`,
            XLA_FLAGS single-threaded), loading the policy that `save_policy`
            wrote (so it also exercises `load_policy`). Its CPU time per call
            is reported too: on a machine that other work keeps busy, wall
            time includes waiting for the core, CPU time does not.

Each policy is measured in its own process (a clean start, and `--timeout`
stops one that runs away). Ratios are against BC measured in the same run (or
the first policy if BC is not registered). Run with `nice` on a shared
machine; `--quick` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

OBS_DIM = 1144  # RP1M Table 3
ACTION_DIM = 39
CONTROL_HZ = 20.0  # RP1M / robopianist: 0.05 s control timestep
SINGLE_CORE_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def synthetic_dataset(spec, *, n_episodes: int = 4, n_steps: int = 200, seed: int = 0):
    """A WindowDataset with RP1M's observation keys, sizes and dtypes (random values)."""
    from envs.piano.spec import OBSERVATION_KEYS
    from tasks.rlds import Episode, observation_dims, step_field_specs
    from tasks.rlds.reader import WindowDataset

    dims = observation_dims()
    dtypes = {key: field.dtype for key, field in step_field_specs()["observation"].items()}
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n_episodes):
        observation = {}
        for key in OBSERVATION_KEYS:
            if dtypes[key] == np.bool_:
                observation[key] = rng.random((n_steps, dims[key])) < 0.05
            else:
                observation[key] = rng.normal(size=(n_steps, dims[key])).astype(np.float32)
        action = rng.uniform(-1, 1, size=(n_steps, ACTION_DIM)).astype(np.float32)
        episodes.append(Episode(steps={"observation": observation, "action": action}, metadata={}))
    dataset = WindowDataset.from_episodes(
        episodes, spec.obs_horizon, spec.pred_horizon, action_offset=spec.action_offset
    )
    assert dataset.obs_dim == spec.obs_dim, (dataset.obs_dim, spec.obs_dim)
    return dataset


def parameter_count(params) -> int:
    import jax

    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def time_train(train_fn, dataset, config, steps: int) -> tuple[float, object]:
    start = time.perf_counter()
    policy, _ = train_fn(dataset, config, steps=steps, seed=0)
    return time.perf_counter() - start, policy


def time_predict(policy, obs: np.ndarray, calls: int, warmup: int = 3) -> dict:
    """Median wall and mean CPU milliseconds per `predict_chunk` call (batch of `len(obs)`)."""
    import jax

    keys = [jax.random.PRNGKey(i) for i in range(warmup + calls)]
    policy.reset(len(obs))
    for key in keys[:warmup]:
        np.asarray(policy.predict_chunk(obs, key))
    walls = []
    cpu_start = time.process_time()
    for key in keys[warmup:]:
        start = time.perf_counter()
        np.asarray(policy.predict_chunk(obs, key))  # predict_chunk returns numpy: the work is done
        walls.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / calls
    return {"median_ms": 1e3 * statistics.median(walls), "cpu_ms": 1e3 * cpu}


def with_inference_steps(policy, steps: int):
    """The same policy with another number of denoising steps (configs with `num_inference_steps`)."""
    import dataclasses

    config = dataclasses.replace(policy.config, num_inference_steps=steps)
    return type(policy).from_parts(spec=policy.spec, config=config, params=policy.params, normalizer=policy.normalizer)


def single_core_worker(policy_dir: str, calls: int) -> None:
    """Subprocess side of the one-core measurement: prints one JSON line."""
    from agents.common.io import load_policy

    policy = load_policy(Path(policy_dir))
    obs = np.load(Path(policy_dir).parent / "obs.npy")
    result = time_predict(policy, obs, calls)
    steps = getattr(policy.config, "num_inference_steps", None)
    if steps and steps > 1:
        # Latency = fixed + steps * per-step: measure with one denoising step too.
        single = time_predict(with_inference_steps(policy, 1), obs, calls)
        per_step = (result["cpu_ms"] - single["cpu_ms"]) / (steps - 1)
        result["denoise_step_cpu_ms"] = per_step
        result["fixed_cpu_ms"] = result["cpu_ms"] - steps * per_step
    result["affinity"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(result))


def single_core_latency(policy, obs: np.ndarray, calls: int, work: Path) -> dict:
    from agents.common.io import save_policy

    policy_dir = work / policy.name
    save_policy(policy, policy_dir)
    np.save(work / "obs.npy", obs)
    return run_one_core_worker([os.path.abspath(__file__), "--worker", str(policy_dir), "--calls", str(calls)])


def run_one_core_worker(arguments: list[str]) -> dict:
    """Run `python ARGUMENTS` pinned to CPU 0 with single-threaded XLA; return the JSON document
    of its last stdout line (it must hold `affinity`, the CPUs it ran on, which must be one)."""
    env = dict(os.environ, XLA_FLAGS=SINGLE_CORE_XLA_FLAGS, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, *arguments]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"one-core worker failed: {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if len(result["affinity"]) != 1:
        raise RuntimeError(f"one-core worker ran on CPUs {result['affinity']}; taskset missing?")
    return result


def measure(name, entry, args, work: Path) -> dict:
    policy_cls, config_cls, train_fn = entry
    config = config_cls()
    spec = config.spec_for(OBS_DIM, ACTION_DIM)
    dataset = synthetic_dataset(spec)
    batch_size = getattr(config, "batch_size", None)
    row = {"policy": name, "obs_horizon": spec.obs_horizon, "pred_horizon": spec.pred_horizon,
           "action_horizon": spec.action_horizon, "batch_size": batch_size}
    time_train(train_fn, dataset, config, args.warmup_steps)  # compiles
    short, _ = time_train(train_fn, dataset, config, args.base_steps)
    long, policy = time_train(train_fn, dataset, config, args.base_steps + args.train_steps)
    steps_per_s = args.train_steps / max(long - short, 1e-9)
    row["params"] = parameter_count(policy.params)
    row["train_steps_per_s"] = steps_per_s
    row["train_samples_per_s"] = steps_per_s * batch_size if batch_size else None
    obs, _ = dataset.get_batch(np.array([len(dataset) // 2]))
    latency = time_predict(policy, obs, args.calls)
    row["infer_ms"] = latency["median_ms"]
    row["infer_cpu_ms"] = latency["cpu_ms"]
    if not args.no_single_core:
        one = single_core_latency(policy, obs, args.calls, work)
        row["infer_1core_ms"] = one["median_ms"]
        row["infer_1core_cpu_ms"] = one["cpu_ms"]
        if "denoise_step_cpu_ms" in one:
            row["num_inference_steps"] = config.num_inference_steps
            row["infer_1core_denoise_step_cpu_ms"] = one["denoise_step_cpu_ms"]
            row["infer_1core_fixed_cpu_ms"] = one["fixed_cpu_ms"]
    for key in ("infer", "infer_1core"):
        if f"{key}_ms" in row:
            row[f"{key}_hz"] = 1e3 / row[f"{key}_ms"]
            row[f"{key}_hz_over_20"] = row[f"{key}_hz"] / CONTROL_HZ
    if "infer_1core_cpu_ms" in row:
        row["infer_1core_cpu_hz_over_20"] = 1e3 / row["infer_1core_cpu_ms"] / CONTROL_HZ
    return row


def print_table(rows: list[dict], baseline: str | None) -> None:
    def fmt(value, spec):
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    header = (f"{'policy':10} {'params':>8} {'To/Tp/Ta':>8} {'train smp/s':>11} {'infer ms':>9} {'Hz':>7} "
              f"{'Hz/20':>6} {'1core ms':>9} {'1core Hz':>8} {'Hz/20':>6} {'1core cpu ms':>12}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['policy']:10} error: {row['error']}")
            continue
        horizons = f"{row['obs_horizon']}/{row['pred_horizon']}/{row['action_horizon']}"
        print(f"{row['policy']:10} {row['params'] / 1e6:7.2f}M {horizons:>8} {fmt(row['train_samples_per_s'], '11.1f')} "
              f"{row['infer_ms']:9.2f} {row['infer_hz']:7.1f} {row['infer_hz_over_20']:6.2f} "
              f"{fmt(row.get('infer_1core_ms'), '9.2f')} {fmt(row.get('infer_1core_hz'), '8.1f')} "
              f"{fmt(row.get('infer_1core_hz_over_20'), '6.2f')} {fmt(row.get('infer_1core_cpu_ms'), '12.2f')}")
    for row in rows:
        if "infer_1core_denoise_step_cpu_ms" in row:
            fixed, step = row["infer_1core_fixed_cpu_ms"], row["infer_1core_denoise_step_cpu_ms"]
            budget = 1e3 / CONTROL_HZ
            fits = int((budget - fixed) // step) if budget > fixed else 0
            print(f"\n{row['policy']} on one core: {fixed:.1f} ms fixed + {step:.1f} ms per denoising step "
                  f"x {row['num_inference_steps']} steps (CPU time); the {budget:.0f} ms budget of "
                  f"{CONTROL_HZ:.0f} Hz fits {fits} steps")
    base = next((r for r in rows if r["policy"] == baseline and "error" not in r), None)
    if base is None or len(rows) < 2:
        return
    print(f"\nratios against {baseline} (same run):")
    for row in rows:
        if "error" in row or row is base:
            continue
        parts = []
        if row["train_samples_per_s"] and base["train_samples_per_s"]:
            parts.append(f"train samples/s x{row['train_samples_per_s'] / base['train_samples_per_s']:.3f}")
        parts.append(f"inference latency x{row['infer_ms'] / base['infer_ms']:.1f}")
        if "infer_1core_ms" in row and "infer_1core_ms" in base:
            parts.append(f"1-core latency x{row['infer_1core_ms'] / base['infer_1core_ms']:.1f}")
        print(f"  {row['policy']:10} " + ", ".join(parts))


def measure_in_subprocess(name: str, args, timeout: float) -> dict:
    """`measure` in a fresh process: each policy starts from the same clean state (memory, jit
    caches), and one that runs away is stopped after `timeout` seconds."""
    command = [sys.executable, os.path.abspath(__file__), "--measure", name, "--calls", str(args.calls)]
    if args.quick:
        command.append("--quick")
    if args.no_single_core:
        command.append("--no-single-core")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"policy": name, "error": f"not finished after {timeout:.0f} s (--timeout)"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"policy": name, "error": f"exit {out.returncode}: {out.stderr.strip()[-1500:]}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few steps and calls: a smoke run")
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")
    parser.add_argument("--policies", nargs="*", help="only these registered policies")
    parser.add_argument("--no-single-core", action="store_true", help="skip the pinned one-core subprocess")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per policy (default 1800)")
    parser.add_argument("--calls", type=int, default=None, help="timed predict_chunk calls (default 50, quick 10)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one policy, JSON row on stdout
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the one-core latency subprocess
    args = parser.parse_args()
    args.calls = args.calls or (10 if args.quick else 50)
    args.warmup_steps, args.base_steps, args.train_steps = (2, 2, 3) if args.quick else (2, 5, 20)
    if args.worker:
        single_core_worker(args.worker, args.calls)
        return

    from agents.common.policy import policy_registry

    registry = policy_registry()
    if args.measure:
        work = Path(tempfile.mkdtemp(prefix="policy_speed_"))
        try:
            row = measure(args.measure, registry[args.measure], args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(row))
        return
    names = [n for n in sorted(registry) if not args.policies or n in args.policies]
    if not names:
        raise SystemExit(f"no registered policy to measure (registered: {sorted(registry)})")
    baseline = "bc" if "bc" in names else names[0]
    rows = []
    for name in names:
        started = time.perf_counter()
        row = measure_in_subprocess(name, args, args.timeout)
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(f"[{name}] {'failed' if 'error' in row else 'measured'} in {row['seconds']:.0f} s", file=sys.stderr)
    print(f"obs_dim {OBS_DIM}, action_dim {ACTION_DIM}, control rate {CONTROL_HZ:.0f} Hz, "
          f"{os.cpu_count()} CPUs{' (quick)' if args.quick else ''}")
    print_table(rows, baseline)
    if args.json:
        Path(args.json).write_text(json.dumps({"control_hz": CONTROL_HZ, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
