"""Repertoire quality: how well each kind of specialist plays real keyboard music (issue 18).

On the fixed dev/holdout chunks of `params.yaml` (`quality:`; the split is
fixed, holdout is never tuned on), for each kind (`ik`, `residual`, `droq`,
or any kind registered in `benchmarks.quality_kinds`), per chunk: P/R/F1 of
the rollouts as the pipeline stores them (`tasks.rollouts`, seeds 0..n-1,
action noise included) beside the noise-free policy's, the CPU-seconds of
planning + training, and the causes of the missed goal notes, computed from
the simulation (`envs.piano.failure`). Summary as RP1M reports it (section 4.3:
79% of 2,089 specialists above F1 0.75): median F1 and share of chunks
above 0.75, per kind and set.

Every (kind, chunk) is saved as it finishes (`<out>/results/<kind>/<tag>/<chunk>.json`
and `.npz` with the noise-free episode's arrays, written atomically); a rerun
reuses the results whose key (chunk content, kind, settings, code version)
matches and says so. Outputs: the tables (markdown, printed and in
`<out>/report.md`), `<out>/f1_distribution.png`, `--json`.

    python benchmarks/specialist_quality.py --set dev --kind ik
    python benchmarks/specialist_quality.py --set all --kind ik --physics-timestep 0.002,0.005
    python benchmarks/specialist_quality.py --chunks robopianist:CMajorScaleTwoHands:0 \
        --kind residual,droq --profile smoke
    python benchmarks/specialist_quality.py --set holdout --kind ik --jobs 2 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small dense QPs (envs.control.nominal)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import numpy as np

from benchmarks.quality_report import plot_distribution, render_report, summary

TRAINED_KINDS = ("residual", "droq")  # kinds with a training budget (the others ignore the profile)
# The `cpu` profile's 60k env steps take about an hour on this project's 2-core
# machine (tasks/specialist.py): the rate at which --budget-cpu-s becomes steps.
DEFAULT_STEPS_PER_CPU_S = 60_000 / 3600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", default="all", help="dev | holdout | all")
    parser.add_argument("--chunks", action="append", help="SONG_REF:INDEX, comma-separated or repeated (any chunk)")
    parser.add_argument("--kind", default="ik", help="comma-separated kinds (benchmarks.quality_kinds.KINDS)")
    parser.add_argument("--rollouts", type=int, help="stored rollouts per chunk (default: quality.rollouts)")
    parser.add_argument("--profile", default="cpu", help="training profile of trained kinds (tasks.specialist)")
    parser.add_argument("--budget-cpu-s", type=float, help="training budget of trained kinds, CPU-seconds")
    parser.add_argument("--steps-per-cpu-s", type=float, default=DEFAULT_STEPS_PER_CPU_S,
                        help="env steps per CPU-second, to turn --budget-cpu-s into steps")
    parser.add_argument("--physics-timestep", help="EnvConfig.physics_timestep, comma-separated for several "
                        "(default: the project's)")
    parser.add_argument("--max-steps", type=int, help="play only the first N steps of each chunk")
    parser.add_argument("--jobs", type=int, default=1, help="(kind, chunk) evaluations at once (processes)")
    parser.add_argument("--work", type=Path, help="specialists and rollouts (default: quality.work_dir)")
    parser.add_argument("--out", type=Path, help="results and reports (default: quality.reports_dir)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write everything as one JSON file")
    parser.add_argument("--verbose", action="store_true", help="log the pipeline's progress")
    args = parser.parse_args(argv)

    from benchmarks import quality_kinds
    from benchmarks.quality_set import load_quality_set, select

    listed, section = load_quality_set(args.params)
    specs = [s for arg in args.chunks or [] for s in arg.split(",") if s.strip()]
    chunks = select(listed, args.set, specs)
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(quality_kinds.KINDS))
    if unknown or not kinds:
        raise SystemExit(f"--kind {args.kind!r}: unknown {unknown}; registered: {sorted(quality_kinds.KINDS)}")
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: must be >= 1")
    n_rollouts = args.rollouts or section["rollouts"]
    if n_rollouts < 1:
        raise SystemExit(f"--rollouts {n_rollouts}: must be >= 1")
    env_configs = _env_configs(args.physics_timestep)
    profile = _profile(args) if any(k in TRAINED_KINDS for k in kinds) else None
    work = args.work or Path(section["work_dir"])
    out = args.out or Path(section["reports_dir"])
    _logging(args.verbose)

    jobs = [_job(kind, entry, env_config, profile if kind in TRAINED_KINDS else None, n_rollouts, args.max_steps,
                 work, out) for kind in kinds for env_config in env_configs for entry in chunks]
    started = time.perf_counter()
    todo = [job for job in jobs if not _done(job)]
    for job in jobs:
        if job not in todo:
            print(f"reused   {job['kind']:9s} {job['spec']} ({job['result_path']})", flush=True)
    errors = _run(todo, args.jobs)
    results = [json.loads(Path(j["result_path"]).read_text()) for j in jobs if Path(j["result_path"]).exists()]
    timesteps = [c.physics_timestep for c in env_configs]
    report = render_report(results, chunks, kinds, timesteps, n_rollouts, profile)
    print()
    print(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    plot_distribution(results, kinds, out / "f1_distribution.png")
    payload = {"settings": {"kinds": kinds, "physics_timesteps": timesteps, "rollouts": n_rollouts,
                            "max_steps": args.max_steps, "profile": profile.name if profile else None,
                            "profile_steps": profile.total_steps if profile else None},
               "computed": [_name(j) for j in todo if _name(j) not in errors],
               "reused": [_name(j) for j in jobs if j not in todo],
               "errors": errors, "summary": summary(results), "results": results,
               "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {out / 'report.md'}, {out / 'f1_distribution.png'}" + (f", {args.json}" if args.json else ""))
    if errors:
        print(f"{len(errors)} of {len(jobs)} evaluations failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()),
              file=sys.stderr)
        return 3
    return 0


def _env_configs(text: str | None) -> list:
    from envs.piano.config import EnvConfig

    if text is None:
        return [EnvConfig()]
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--physics-timestep {text!r}: expected seconds, comma-separated (e.g. 0.002,0.005)")
    if not values or min(values) <= 0:
        raise SystemExit(f"--physics-timestep {text!r}: expected positive seconds (e.g. 0.002,0.005)")
    return [EnvConfig(physics_timestep=v) for v in dict.fromkeys(values)]


def _name(job: dict) -> str:
    """How a job is named in the output: chunk, kind, and the timestep (dt0.005) when it is not the default."""
    from envs.piano.config import EnvConfig

    dt = job["env_config"]["physics_timestep"]
    return f"{job['spec']} {job['kind']}" + ("" if dt == EnvConfig().physics_timestep else f" dt{dt:g}")


def _profile(args):
    from tasks.specialist import get_profile

    profile = get_profile(args.profile)
    if args.budget_cpu_s is not None:
        if args.budget_cpu_s <= 0 or args.steps_per_cpu_s <= 0:
            raise SystemExit("--budget-cpu-s and --steps-per-cpu-s must be > 0")
        steps = max(1, int(round(args.budget_cpu_s * args.steps_per_cpu_s)))
        agent = dataclasses.replace(profile.agent, buffer_size=min(profile.agent.buffer_size, steps),
                                    warmup_steps=min(profile.agent.warmup_steps, max(1, steps // 12)))
        profile = dataclasses.replace(profile, name=f"{profile.name}-{args.budget_cpu_s:g}cpus", total_steps=steps,
                                      eval_every=min(profile.eval_every, steps),
                                      checkpoint_every=min(profile.checkpoint_every, steps), agent=agent)
    return profile


def _logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("tasks", "envs", "benchmarks"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO if verbose else logging.WARNING)


def _job(kind, entry, env_config, profile, n_rollouts, max_steps, work: Path, out: Path) -> dict:
    from benchmarks.quality_kinds import QUALITY_VERSION
    from benchmarks.quality_set import load_chunk

    chunk = load_chunk(entry, work / "written", max_steps)  # content id for the key; cheap
    tag = f"dt{env_config.physics_timestep:g}" + (f"-{profile.name}" if profile else "") + \
        (f"-max{max_steps}" if max_steps else "")
    key_parts = [QUALITY_VERSION, kind, chunk.chunk_id, str(chunk.n_steps), env_config.digest(), str(n_rollouts),
                 profile.digest() if profile else "-"]
    return {"kind": kind, "spec": entry.spec, "ref": entry.ref, "index": entry.index, "set": entry.set,
            "why": entry.why, "slug": entry.slug, "max_steps": max_steps, "n_rollouts": n_rollouts,
            "env_config": env_config.as_dict(), "profile": profile, "tag": tag,
            "key": hashlib.sha256("|".join(key_parts).encode()).hexdigest()[:16],
            "work_dir": str(work / tag / kind / entry.slug), "written_dir": str(work / "written"),
            "result_path": str(out / "results" / kind / tag / f"{entry.slug}.json")}


def _done(job: dict) -> bool:
    path = Path(job["result_path"])
    try:
        return json.loads(path.read_text()).get("key") == job["key"]
    except (OSError, ValueError):
        return False


def run_job(job: dict) -> dict:
    """Evaluate one (kind, chunk) and save its result (worker entry; returns the result)."""
    from benchmarks.quality_kinds import KindJob, evaluate
    from benchmarks.quality_set import QualityChunk, chunk_character, load_chunk
    from envs.piano.config import EnvConfig

    entry = QualityChunk(job["ref"], job["index"], job["set"], job["why"])
    chunk = load_chunk(entry, Path(job["written_dir"]), job["max_steps"])
    env_config = EnvConfig.from_dict(job["env_config"])
    result, arrays = evaluate(KindJob(job["kind"], chunk, Path(job["work_dir"]), env_config, job["profile"],
                                      job["n_rollouts"]))
    result = {"key": job["key"], "spec": job["spec"], "ref": job["ref"], "index": job["index"], "set": job["set"],
              "why": job["why"], "chunk_id": chunk.chunk_id, "character": chunk_character(chunk), **result}
    path = Path(job["result_path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path.with_suffix(".npz"))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)  # last: the JSON marks the result done
    return result


def _run(todo: list[dict], n_jobs: int) -> dict:
    """Runs the jobs; one failing job is reported and the others go on. Returns {job: error}."""
    errors: dict[str, str] = {}

    def report(job: dict, result: dict | None, exc: BaseException | None) -> None:
        name = _name(job)
        if exc is not None:
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"FAILED   {job['kind']:9s} {job['spec']}: {errors[name]}", file=sys.stderr, flush=True)
            return
        print(f"computed {job['kind']:9s} {job['spec']}: F1 stored {result['stored']['f1']:.3f}, noise-free "
              f"{result['noise_free']['f1']:.3f}, missed {result['failures']['noise_free']['n_missed']}/"
              f"{result['failures']['noise_free']['n_notes']} notes, fit {result['cpu_s']['fit']:.0f} CPU-s, "
              f"{result['wall_s']:.0f} s", flush=True)

    if n_jobs <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                report(job, run_job(job), None)
            except Exception as exc:  # noqa: BLE001 - reported per job
                report(job, None, exc)
        return errors
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job): job for job in todo}
        for future in as_completed(futures):
            try:
                report(futures[future], future.result(), None)
            except Exception as exc:  # noqa: BLE001 - reported per job
                report(futures[future], None, exc)
    return errors


if __name__ == "__main__":
    sys.exit(main())
