"""The benchmark flow: a collection's shards -> multi-song policies -> RP1M Table 2.

One Prefect flow run over a `BenchmarkConfig` (tasks/benchmark.py):

    plan-benchmark (once)      training sets, evaluation groups and chunks; refuses
                               out-of-distribution songs that are in a training set
    pretrain-goal-sdf (once, with `sdf_sources`)  PianoMime's goal autoencoder on those
                               songs, for the pianomime methods (a failure fails only them)
    train-policy (per training set x method)
    evaluate-policy (per policy x group, after its training)
    benchmark-report (once)    table.md / table.csv / bars.png from the saved episodes

Work already done (a policy folder or an evaluation record carrying the
current key) is not submitted, so rerunning the same command redoes nothing,
and changing one method retrains and re-evaluates that method only. A failing
training or evaluation is recorded in the summary and its cells stay empty;
the other methods go on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import emit, error_of, failed
from tasks.benchmark import (
    BenchmarkConfig,
    evaluate_task,
    evaluation_done,
    group_evaluation_key,
    plan_task,
    policy_done,
    policy_key,
    records_stem,
    report_task,
    sdf_task,
    train_policy_task,
    write_plan,
)


@flow(name="benchmark", log_prints=False)
def benchmark_flow(config: BenchmarkConfig) -> dict:
    logger = get_run_logger()
    started = time.time()
    plan = plan_task.submit(config).result()  # a planning error (e.g. an OOD song in training) ends the run
    steps = config.train_steps
    n_evals = len(plan["train_sets"]) * len(config.methods) * len(plan["groups"])
    emit("planned", policies=len(plan["train_sets"]) * len(config.methods), evaluations=n_evals)

    # 0. the goal autoencoder the pianomime methods share (keyed like a policy: reused when there)
    sdf_dir, sdf_error = None, None
    if any(config.needs_sdf(m) for m in config.methods):
        try:
            sdf = sdf_task.submit(config.sdf_sources, config.policies_dir, catalog_dir=config.catalog_dir,
                                  max_steps=config.sdf_max_steps, seed=config.seed, workers=config.workers,
                                  limit=config.sdf_limit).result()
            sdf_dir = sdf["sdf_dir"]
            emit("sdf", **sdf)
        except Exception as exc:  # noqa: BLE001 - only the methods that need it fail
            sdf_error = f"{type(exc).__name__}: {exc}"
            logger.warning("goal autoencoder pre-training failed: %s", sdf_error[:300])

    # 1. policies: submitted only where no folder carries the key
    policies = []  # (train_set, method, key, future | None)
    for train_set in plan["train_sets"]:
        for method in config.trained_methods(sdf_dir):
            entry = {"method": method.label, "train_songs": len(train_set)}
            if sdf_error is not None and config.needs_sdf(method):
                policies.append({**entry, "status": "failed", "stage": "sdf", "error": sdf_error})
                continue
            try:
                key = policy_key(method, [Path(d) for d in train_set], steps=steps, seed=config.seed)
            except Exception as exc:  # noqa: BLE001 - e.g. an unregistered policy or a bad override
                policies.append({**entry, "status": "failed", "stage": "config", "error": f"{type(exc).__name__}: {exc}"})
                continue
            entry.update(policy_key=key, policy_dir=str(Path(config.policies_dir) / key))
            if policy_done(Path(entry["policy_dir"]), key):
                policies.append({**entry, "status": "cached", "future": None})
                continue

            def progress(step: int, total: int, info: dict, label=method.label, n=len(train_set)) -> None:
                emit("train_progress", method=label, train_songs=n, step=step, total=total, loss=info.get("loss"))

            future = train_policy_task.submit(method, train_set, config.policies_dir, key=key, steps=steps,
                                              seed=config.seed, profile=config.profile, on_progress=progress)
            policies.append({**entry, "status": "submitted", "ran": True, "future": future})

    # 2. evaluations: per policy and group, after the policy's training
    evaluations = []
    for entry in policies:
        if entry["status"] == "failed":
            continue
        for group, items in plan["groups"].items():
            stem = records_stem(config.reports_dir, entry["policy_key"], group)
            key = group_evaluation_key(entry["policy_key"], items, config)
            cell = {"group": group, "train_songs": entry["train_songs"], "method": entry["method"],
                    "policy_key": entry["policy_key"], "key": key,
                    "records": str(stem.with_suffix(".json").relative_to(Path(config.reports_dir)))}
            if entry["future"] is None and evaluation_done(stem, key):
                evaluations.append({**cell, "status": "cached", "future": None})
                continue
            future = evaluate_task.submit(entry["policy_dir"], entry["policy_key"], group, items, config,
                                          method=entry["method"], train_songs=entry["train_songs"],
                                          wait_for=[entry["future"]] if entry["future"] is not None else None)
            evaluations.append({**cell, "status": "submitted", "ran": True, "future": future})

    # 3. outcomes (a failed stage names itself)
    for entry in policies:
        future = entry.pop("future", None)
        if future is None:
            continue
        wait([future])
        if failed(future):
            entry.update(status="failed", stage="train", error=error_of(future))
            logger.warning("%s (%d songs): training failed: %s", entry["method"], entry["train_songs"],
                           entry["error"][:300])
        else:
            result = future.result()
            entry.update(status="done", final_loss=result.get("final_loss"), train_seconds=result.get("train_seconds"))
        emit("trained", **{k: v for k, v in entry.items() if k != "policy_dir"})
    for cell in evaluations:
        future = cell.pop("future", None)
        if future is None:
            emit("evaluated", **cell)
            continue
        wait([future])
        if failed(future):
            training = next(p for p in policies if p.get("policy_key") == cell["policy_key"])
            if training["status"] == "failed":
                cell.update(status="skipped", error="training failed")
            else:
                cell.update(status="failed", stage="evaluate", error=error_of(future))
                logger.warning("%s on %s: evaluation failed: %s", cell["method"], cell["group"], cell["error"][:300])
        else:
            result = future.result()
            cell.update(status="done", f1=result.get("f1"), episodes=result.get("episodes"))
        emit("evaluated", **cell)

    # 4. the table, from the saved episodes only
    write_plan(config.reports_dir, plan, [
        {k: c[k] for k in ("group", "train_songs", "method", "policy_key", "key", "records")} for c in evaluations
    ], config)
    files = [str(p) for p in report_task.submit(config.reports_dir).result()]

    def count(records: list[dict], status: str) -> int:
        return sum(1 for r in records if r["status"] == status)

    summary = {
        "policies": policies,
        "evaluations": evaluations,
        "tasks_run": {"train": sum(1 for p in policies if p.get("ran")),
                      "evaluate": sum(1 for c in evaluations if c.get("ran") and c["status"] != "skipped")},
        "tasks_reused": {"train": count(policies, "cached"), "evaluate": count(evaluations, "cached")},
        "failed": {"train": sum(1 for p in policies if p["status"] == "failed"),
                   "evaluate": sum(1 for c in evaluations if c["status"] in ("failed", "skipped"))},
        "files": files,
        "reports_dir": config.reports_dir,
        "seconds": round(time.time() - started, 1),
    }
    # Not under reports_dir: a DVC output should change only when the results do.
    summary_path = Path(config.work_dir) / "benchmark" / "last_summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1, default=str))
    return summary


def run_benchmark(config: BenchmarkConfig) -> dict:
    """Run the flow; up to `config.workers` tasks at once in threads of this process."""
    return benchmark_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=config.workers))(config)
