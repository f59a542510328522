"""Diffusion Policy: one-core decision rate and benchmark F1 against the number of DDIM steps.

In one run:

  speed     at paper sizes (`DiffusionConfig` defaults, RP1M Table 8; obs 1144, action 39),
            a batch-1 `predict_chunk` in a subprocess pinned to one CPU (`taskset -c 0`,
            single-threaded XLA) for each --steps value: median wall ms, CPU ms per
            call, Hz, and Hz / 20 (the 20 Hz control rate). CPU time is what a busy
            machine disturbs least; wall time is what a free core would see.
  quality   the tiny benchmark: --rollouts episodes of the `ik` specialist (OT-IK
            nominal plus rollout noise) on the first --chunk-steps steps of --song,
            collected on the lean path; a small Diffusion Policy (--down-dims,
            --train-steps) trained on them once; then the same episodes (chunk,
            seeds, sampling keys) played by it with each --steps value
            (`tasks.policy_eval`): F1 per setting, and the mean absolute difference of
            its first actions from the reference setting (the first --steps value).

`python -m benchmarks.diffusion_steps --steps 10,5,4` (run with `nice` on a shared machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

from benchmarks.policy_speed import ACTION_DIM, CONTROL_HZ, OBS_DIM, run_one_core_worker


def speed_worker(steps: list[int], calls: int) -> None:
    """Subprocess side: one JSON line {"<steps> <film>": {median_ms, cpu_ms}} at paper sizes, film
    "dense" (the observation FiLM as one product: the policy before `agents.diffusion.film`) or
    "rows" (from the goal's weight rows, the policy's default on RP1M observations)."""
    import jax

    from agents.common.policy import Normalizer
    from agents.diffusion.agent import DiffusionPolicy, init_params
    from agents.diffusion.config import DiffusionConfig
    from benchmarks.policy_speed import synthetic_dataset, time_predict

    config = DiffusionConfig()
    spec = config.spec_for(OBS_DIM, ACTION_DIM)
    dataset = synthetic_dataset(spec, n_episodes=2, n_steps=50)
    normalizer = Normalizer.from_dataset(dataset, seed=0)
    params = init_params(jax.random.PRNGKey(0), config, ACTION_DIM, spec.obs_horizon * OBS_DIM)
    obs, _ = dataset.get_batch(np.array([10]))
    out = {}
    for n in steps:
        for film in ("dense", "rows"):
            policy = DiffusionPolicy(spec, replace(config, num_inference_steps=n), params, normalizer)
            if film == "dense":
                policy._obs_film = None
            out[f"{n} {film}"] = time_predict(policy, obs, calls)
            if film == "rows" and policy._obs_film is None:
                raise RuntimeError("the synthetic windows did not take the goal-rows FiLM path")
    out["affinity"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(out))


def speed(steps: list[int], calls: int) -> dict:
    result = run_one_core_worker([os.path.abspath(__file__), "--speed-worker", "--steps", ",".join(map(str, steps)),
                                  "--calls", str(calls)])
    result.pop("affinity")
    return result


def tiny_benchmark(args, steps: list[int], work: Path) -> dict:
    """F1 of one small Diffusion Policy trained on ik episodes, played with each number of DDIM steps."""
    import jax

    from agents.diffusion.agent import train
    from agents.diffusion.config import DiffusionConfig
    from envs.control.nominal import NominalConfig
    from envs.control.residual import ResidualConfig
    from envs.music.chunks import make_chunks, save_chunk
    from envs.music.songs import load_song
    from envs.piano.config import EnvConfig
    from tasks.policy_eval import EvalConfig, EvalItem, evaluate_episodes
    from tasks.rlds.reader import WindowDataset
    from tasks.rollouts import iter_rollout_episodes, rollout_chunk
    from tasks.specialist import ResidualSpecialistConfig, train_specialist

    song = load_song(args.song)
    chunk = replace(make_chunks(song)[0], n_steps=args.chunk_steps)
    chunk_file = work / "chunk.json"
    save_chunk(chunk, chunk_file)
    residual = ResidualSpecialistConfig(task=ResidualConfig(nominal=NominalConfig(search=False)))
    train_specialist(chunk, work / "ik", "smoke", kind="ik", residual_config=residual)
    rollout_chunk(chunk, song.song_id, work / "ik", work / "rollouts", n_rollouts=args.rollouts)
    episodes = list(iter_rollout_episodes(work / "rollouts"))
    expert_f1 = float(np.mean([ep.metadata["f1"] for ep in episodes]))

    config = DiffusionConfig(down_dims=tuple(args.down_dims), batch_size=64, warmup_steps=100,
                             learning_rate=args.lr)
    spec = config.spec_for(OBS_DIM, ACTION_DIM)
    dataset = WindowDataset.from_episodes(episodes, spec.obs_horizon, spec.pred_horizon,
                                          action_offset=spec.action_offset)
    policy, history = train(dataset, config, steps=args.train_steps, seed=0)
    items = [EvalItem("tiny", args.song, song.song_id, chunk.chunk_id, chunk.index, str(chunk_file),
                      chunk.n_steps, seed) for seed in range(args.eval_episodes)]
    rows, first_actions = {}, {}
    window = np.stack([dataset.get_batch(np.array([i]))[0][0] for i in range(0, len(dataset), 7)])
    for n in steps:
        variant = type(policy).from_parts(spec=policy.spec, config=replace(policy.config, num_inference_steps=n),
                                          params=policy.params, normalizer=policy.normalizer)
        results = evaluate_episodes(variant, items, EnvConfig(), EvalConfig(lanes=8))
        rows[n] = {"f1": float(np.mean([r.f1 for r in results])),
                   "f1_per_episode": [round(r.f1, 4) for r in results]}
        first_actions[n] = np.asarray(variant.predict_chunk(window, jax.random.PRNGKey(0)))
    reference = steps[0]
    scale = float(np.mean(np.abs(first_actions[reference] - first_actions[reference].mean(0))))
    for n in steps:
        rows[n]["mean_abs_action_diff"] = float(np.mean(np.abs(first_actions[n] - first_actions[reference])))
        rows[n]["action_spread"] = scale
    return {"expert_f1": expert_f1, "final_loss": history[-1]["loss"], "config": dataclasses.asdict(config),
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10,5,4", help="numbers of DDIM steps, the reference first")
    parser.add_argument("--calls", type=int, default=30, help="timed predict_chunk calls per setting")
    parser.add_argument("--song", default="robopianist:CMajorScaleTwoHands")
    parser.add_argument("--chunk-steps", type=int, default=100)
    parser.add_argument("--rollouts", type=int, default=16, help="ik episodes to train on")
    parser.add_argument("--down-dims", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128, 256])
    parser.add_argument("--train-steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the small policy")
    parser.add_argument("--eval-episodes", type=int, default=8)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", metavar="OUT", help="also write the results here")
    parser.add_argument("--speed-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if args.speed_worker:
        speed_worker(steps, args.calls)
        return
    result = {"speed": speed(steps, args.calls)}
    print(f"Diffusion Policy, paper sizes, batch 1, one core (taskset -c 0, single-threaded XLA), {args.calls} calls")
    print(f"{'DDIM steps, obs FiLM':>21} {'wall ms':>8} {'cpu ms':>8} {'Hz (cpu)':>9} {'Hz/20':>6} {'Hz (wall)':>9} "
          f"{'x (cpu)':>8}")
    base = result["speed"][f"{steps[0]} dense"]["cpu_ms"]
    for name, row in result["speed"].items():
        print(f"{name:>21} {row['median_ms']:8.1f} {row['cpu_ms']:8.1f} {1e3 / row['cpu_ms']:9.1f} "
              f"{1e3 / row['cpu_ms'] / CONTROL_HZ:6.2f} {1e3 / row['median_ms']:9.1f} {base / row['cpu_ms']:8.2f}")
    if not args.skip_quality:
        work = Path(tempfile.mkdtemp(prefix="diffusion_steps_"))
        try:
            result["quality"] = quality = tiny_benchmark(args, steps, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"\ntiny benchmark: {args.rollouts} ik episodes of {args.song} chunk 0 ({args.chunk_steps} steps), "
              f"expert F1 {quality['expert_f1']:.3f}; Diffusion Policy down_dims {args.down_dims}, "
              f"{args.train_steps} steps at lr {args.lr:g} (final loss {quality['final_loss']:.4f}); {args.eval_episodes} episodes each")
        print(f"{'DDIM steps':>10} {'F1':>7} {'|a - a_ref|':>12} {'(action spread)':>16}")
        for n, row in quality["rows"].items():
            print(f"{n:10d} {row['f1']:7.3f} {row['mean_abs_action_diff']:12.4f} {row['action_spread']:16.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
