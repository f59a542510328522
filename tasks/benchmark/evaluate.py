"""Evaluating one policy on one group of chunks in the real env, cached per evaluation key."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from tasks.benchmark.config import BenchmarkConfig
from tasks.policy_eval import (
    EvalItem,
    evaluate_episodes,
    evaluation_key,
    read_records,
    save_records,
    summarize,
)

log = logging.getLogger(__name__)


def records_stem(reports_dir: str | Path, policy_key_: str, group: str) -> Path:
    return Path(reports_dir) / "episodes" / policy_key_ / group


def group_evaluation_key(policy_key_: str, items: Sequence[dict], config: BenchmarkConfig) -> str:
    return evaluation_key(policy_key_, [EvalItem.from_dict(i) for i in items], config.env_config(), config.eval)


def evaluation_done(stem: Path, key: str) -> bool:
    doc = read_records(Path(stem).with_suffix(".json"))
    return bool(doc) and doc.get("key") == key


def evaluate_policy_group(
    policy_dir: str,
    policy_key_: str,
    group: str,
    items: Sequence[dict],
    config: BenchmarkConfig,
    *,
    method: str = "",
    train_songs: int = 0,
) -> dict:
    """Play a group's items with a saved policy and write its records (or reuse them)."""
    from agents.common.io import load_policy

    stem = records_stem(config.reports_dir, policy_key_, group)
    key = group_evaluation_key(policy_key_, items, config)
    if evaluation_done(stem, key):
        doc = read_records(stem.with_suffix(".json"))
        return {"records": str(stem.with_suffix(".json")), "reused": True, **summarize(doc["episodes"])}
    policy = load_policy(Path(policy_dir))
    started = time.perf_counter()
    results = evaluate_episodes(policy, [EvalItem.from_dict(i) for i in items], config.env_config(), config.eval)
    seconds = time.perf_counter() - started
    path = save_records(stem, results, key=key, policy_key=policy_key_, extra={
        "group": group, "method": method, "train_songs": train_songs, "eval": config.eval.as_dict(),
        "env": config.env_config().as_dict(), "seconds": round(seconds, 2),
    })
    steps = sum(r.n_steps for r in results)
    log.info("%s on %s: %d episodes, %d steps in %.1f s (%.0f steps/s)", method or policy_key_, group,
             len(results), steps, seconds, steps / max(seconds, 1e-9))
    doc = read_records(path)
    return {"records": str(path), "reused": False, "seconds": round(seconds, 2), **summarize(doc["episodes"])}


# ----------------------------------------------------------------------------- reports
