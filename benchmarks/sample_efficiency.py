"""F1 against env steps: DroQ from scratch (RP1M) vs the OT-IK controller vs the residual specialist.

For each chunk, in one run, with the same step budget and seed:

- droq:     `train_specialist(kind="droq")`, RP1M's DroQ with the OT reward
- ik:       the open-loop OT-IK nominal controller (`kind="ik"`, zero steps)
- residual: `train_specialist(kind="residual")`, DroQ learning a bounded
            residual around the OT-IK controller (PianoMime section 3.2)

The learning curves come from the specialists' periodic deterministic
evaluations (P/R/F1 per step, robopianist's metric). Printed: a table of F1
at each evaluation step, the best F1 of each method and the ratios
residual / droq and residual / ik; saved as JSON and a PNG plot.

Training folders live under --work (default .cache/sample_efficiency) and
resume like any specialist, so an interrupted run continues where it was.

    python benchmarks/sample_efficiency.py                        # cpu budget, default chunks
    python benchmarks/sample_efficiency.py --steps 10000 --eval-every 2500
    python benchmarks/sample_efficiency.py --chunk robopianist:CMajorScaleTwoHands:0 --methods ik,residual
    python benchmarks/sample_efficiency.py --jobs 2                # two specialists at a time

Targets (issue 6): ik F1 >= 0.6 on the easy chunks; residual reaches an F1
that droq does not reach within the budget, and >= 0.85 on the easy chunks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

METHODS = ("droq", "ik", "residual")
# Easy to hard (as benchmarks/ik_open_loop.py).
DEFAULT_CHUNKS = (
    "robopianist:CMajorScaleTwoHands:0",
    "robopianist:TwinkleTwinkleRousseau:0",
    "robopianist:NocturneRousseau:0",
)


def _load_chunk(spec: str):
    from envs.music.chunks import make_chunks
    from envs.music.songs import load_song

    ref, _, index = spec.rpartition(":")
    if not ref or not index.isdigit():
        raise SystemExit(f"--chunk {spec!r}: expected SONG_REF:CHUNK_INDEX, e.g. robopianist:CMajorScaleTwoHands:0")
    chunks = make_chunks(load_song(ref))
    if int(index) >= len(chunks):
        raise SystemExit(f"--chunk {spec!r}: the song has {len(chunks)} chunks")
    return chunks[int(index)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", action="append", help="SONG_REF:CHUNK_INDEX (repeatable)")
    parser.add_argument("--methods", default="ik,residual,droq")
    parser.add_argument("--profile", default="cpu", help="training budget (tasks.specialist.PROFILES)")
    parser.add_argument("--steps", type=int, help="override the profile's env steps")
    parser.add_argument("--eval-every", type=int, help="override the profile's evaluation interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="specialists trained at once (processes)")
    parser.add_argument("--work", type=Path, default=Path(".cache/sample_efficiency"))
    parser.add_argument("--out", type=Path, default=Path("datasets/reports/sample_efficiency"))
    args = parser.parse_args()

    from tasks.specialist import get_profile

    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: must be >= 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; expected some of {list(METHODS)}")
    profile = get_profile(args.profile)
    changes = {}
    if args.steps:
        changes["total_steps"] = args.steps
        changes["checkpoint_every"] = min(profile.checkpoint_every, args.steps)
        changes["agent"] = dataclasses.replace(profile.agent, buffer_size=min(profile.agent.buffer_size, args.steps))
    if args.eval_every:
        changes["eval_every"] = args.eval_every
    if changes:
        profile = dataclasses.replace(profile, name=f"{profile.name}-custom", **changes)

    specs = args.chunk or list(DEFAULT_CHUNKS)
    chunks = {spec: _load_chunk(spec) for spec in specs}
    results = [{"chunk": spec, "chunk_id": chunks[spec].chunk_id, "n_steps": chunks[spec].n_steps, "methods": {}}
               for spec in specs]
    rows = {row["chunk"]: row for row in results}
    jobs = [(spec, method) for spec in specs for method in methods]
    started = time.perf_counter()

    def record(spec: str, method: str, entry: dict) -> None:
        rows[spec]["methods"][method] = entry
        _save(args, profile, methods, [r for r in results if r["methods"]], started)
        if "error" in entry:
            print(f"{spec} {method}: FAILED: {entry['error']}", file=sys.stderr, flush=True)
        else:
            print(f"{spec} {method}: best F1 {entry['best_f1']:.3f} at step {entry['best_at_step']}, "
                  f"final {entry['final_f1']:.3f} ({entry['steps']} steps, {entry['seconds']:.0f} s)", flush=True)

    def failed(exc: BaseException) -> dict:  # one failing job is reported; the others still run
        return {"error": f"{type(exc).__name__}: {exc}"}

    if args.jobs <= 1:
        for spec, method in jobs:
            try:
                entry = _train_one(spec, method, profile, args.seed, args.work)
            except Exception as exc:  # noqa: BLE001 - reported per job, see failed()
                entry = failed(exc)
            record(spec, method, entry)
    else:  # one specialist per process; each trains single-threaded, so N jobs use about N cores
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_train_one, spec, method, profile, args.seed, args.work): (spec, method)
                       for spec, method in jobs}
            for future in as_completed(futures):
                try:
                    entry = future.result()
                except Exception as exc:  # noqa: BLE001 - reported per job, see failed()
                    entry = failed(exc)
                record(*futures[future], entry)
    for row in results:  # methods in the requested order
        row["methods"] = {m: row["methods"][m] for m in methods}

    print()
    header = f"{'chunk':42s} {'steps':>6s} " + " ".join(f"{m:>9s}" for m in methods)
    print(f"best F1 within {profile.total_steps} env steps ({profile.name}, seed {args.seed})")
    print(header)
    for row in results:
        cells = " ".join(_cell(row["methods"][m]) for m in methods)
        print(f"{row['chunk']:42s} {row['n_steps']:6d} {cells}")
    ratios = {}
    for row in results:
        m = row["methods"]
        r = {}
        ok = {k: v for k, v in m.items() if "error" not in v}
        if "residual" in ok and "droq" in ok:
            r["residual / droq"] = _ratio(ok["residual"]["best_f1"], ok["droq"]["best_f1"])
        if "residual" in ok and "ik" in ok:
            r["residual / ik"] = _ratio(ok["residual"]["best_f1"], ok["ik"]["best_f1"])
        ratios[row["chunk"]] = r
        if r:
            print(f"  {row['chunk']}: " + ", ".join(f"{k} = {v}" for k, v in r.items()))
    print()
    for row in results:
        print(f"F1 vs env steps, {row['chunk']}:")
        for method in methods:
            if "error" in row["methods"][method]:
                print(f"  {method:9s} failed: {row['methods'][method]['error']}")
                continue
            points = ", ".join(f"{p['step']}:{p['f1']:.3f}" for p in row["methods"][method]["curve"])
            print(f"  {method:9s} {points}")

    _save(args, profile, methods, results, started, ratios)
    _plot(results, methods, profile, args.out / "sample_efficiency.png")
    print(f"\nwrote {args.out / 'sample_efficiency.json'} and {args.out / 'sample_efficiency.png'}")
    n_failed = sum("error" in e for row in results for e in row["methods"].values())
    if n_failed:
        raise SystemExit(f"{n_failed} of {len(jobs)} jobs failed (see above and the JSON report)")


def _cell(entry: dict) -> str:
    return f"{'failed':>9s}" if "error" in entry else f"{entry['best_f1']:9.3f}"


def _ratio(a: float, b: float):
    """a / b rounded, or None where b is 0 (the JSON says null rather than a huge number)."""
    return round(a / b, 2) if b > 0 else None


def _train_one(spec: str, method: str, profile, seed: int, work: Path) -> dict:
    """Trains (or reuses) one method's specialist on one chunk; its learning curve and timing."""
    import logging

    from tasks.specialist import train_specialist

    package_log = logging.getLogger("tasks")  # progress lines; absl owns the root logger
    if not package_log.handlers:
        package_log.addHandler(logging.StreamHandler())
        package_log.propagate = False
    for handler in package_log.handlers:  # a pool process runs several jobs: label this one
        handler.setFormatter(logging.Formatter(f"%(asctime)s [{method}] %(message)s"))
    package_log.setLevel(logging.INFO)
    chunk = _load_chunk(spec)
    t0 = time.perf_counter()
    manifest = train_specialist(chunk, work / chunk.chunk_id / method, profile, seed=seed, kind=method)
    curve = [{"step": int(p["step"]), **{k: round(float(p[k]), 4) for k in ("precision", "recall", "f1", "return")}}
             for p in manifest["curve"]]
    best = max(curve, key=lambda p: p["f1"])
    return {"curve": curve, "best_f1": best["f1"], "best_at_step": best["step"],
            "final_f1": curve[-1]["f1"], "steps": manifest["steps"], "seconds": round(time.perf_counter() - t0, 1)}


def _save(args, profile, methods, results, started, ratios=None) -> None:
    """Writes the JSON report (after every method, so an interrupted run keeps what it measured)."""
    from tasks.specialist import ResidualSpecialistConfig

    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"profile": profile.name, "total_steps": profile.total_steps, "eval_every": profile.eval_every,
               "seed": args.seed, "methods": methods, "residual_config": ResidualSpecialistConfig().as_dict(),
               "chunks": results, "ratios": ratios or {}, "complete": ratios is not None,
               "seconds": round(time.perf_counter() - started, 1)}
    path = args.out / "sample_efficiency.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=list))
    os.replace(tmp, path)


def _plot(results, methods, profile, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    colors = {"droq": "tab:blue", "ik": "tab:gray", "residual": "tab:orange"}
    for ax, row in zip(axes[0], results):
        for method in methods:
            if "error" in row["methods"][method]:
                continue
            curve = row["methods"][method]["curve"]
            if method == "ik":
                ax.axhline(curve[-1]["f1"], color=colors[method], linestyle="--", label="OT-IK (open loop)")
            else:
                ax.plot([p["step"] for p in curve], [p["f1"] for p in curve], marker="o", color=colors[method],
                        label={"droq": "DroQ (RP1M)", "residual": "residual DroQ"}[method])
        ax.set_title(row["chunk"].replace("robopianist:", ""), fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, profile.total_steps)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("F1")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
