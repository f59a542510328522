"""The policy benchmark of RP1M section 5 (Table 2) as plain functions and Prefect tasks.

Steps (each idempotent, files are the ground truth of what is done):

    plan       pick the training sets (the first N song folders of the
               collection, sorted by song id, or a listed set), the songs of
               each evaluation group and their chunks; check that no
               out-of-distribution song is in a training set
    train      one policy per (training set, method): a registered policy
               (`agents.common.policy`) with config overrides, trained for the
               profile's step budget; saved to `<policies_dir>/<policy_key>/`
    evaluate   one record per (policy, group): every chunk of the group's
               songs played in the real env (`tasks.policy_eval`)
    report     table.md / table.csv (RP1M Table 2: rows group x #training
               songs, columns methods, F1; P/R in the CSV) and bars.png,
               recomputed from the saved evaluation episodes (`build_table`)

Caching (run-independent keys, never Prefect's result cache):

- `policy_key` = policy name + its full resolved config + training steps +
  seed + the training songs' shard manifests (file checksums) + code
  version; a policy folder whose `policy.json` carries the key is done.
- `tasks.policy_eval.evaluation_key` = policy key + the exact chunks,
  lengths and seeds + env config + code version; a record json carrying it is
  done. Changing one method retrains and re-evaluates only that method.

Modules: `config`, `plan`, `train`, `evaluate`, `report`. Layout::

    <policies_dir>/<policy_key>/            policy.json (+ key, history), params, normalizer
    <work_dir>/benchmark/chunks/<song_id>/  chunk files of the out-of-distribution songs
    <reports_dir>/plan.json                 what the table is made of (cells -> records)
    <reports_dir>/episodes/<policy_key>/<group>.{json,npz}   evaluation episodes
    <reports_dir>/table.md, table.csv, bars.png
"""
from prefect import task
from prefect.cache_policies import NONE

from tasks.benchmark.config import (
    BENCHMARK_VERSION,
    EVAL_ENV,
    GROUP_TITLES,
    GROUPS,
    MODEL_SCALES,
    PLAN_FORMAT,
    PROFILE_STEPS,
    GENERALIST_METHODS,
    RP1M_METHODS,
    RP1M_TABLE2,
    SMALL_SCALE,
    BenchmarkConfig,
    BenchmarkError,
    GroupSpec,
    Method,
)
from tasks.benchmark.evaluate import (
    evaluate_policy_group,
    evaluation_done,
    group_evaluation_key,
    records_stem,
)
from tasks.benchmark.plan import (
    plan_benchmark,
    select_training_sets,
)
from tasks.benchmark.report import (
    build_table,
    table_csv,
    table_markdown,
    write_plan,
    write_reports,
)
from tasks.benchmark.train import (
    policy_done,
    policy_key,
    resolve_config,
    song_shards_digest,
    train_policy,
)

# Prefect task wrappers (coarse: one per step and cell).
plan_task = task(plan_benchmark, name="plan-benchmark", cache_policy=NONE)
train_policy_task = task(train_policy, name="train-policy", cache_policy=NONE)
evaluate_task = task(evaluate_policy_group, name="evaluate-policy", cache_policy=NONE)
report_task = task(write_reports, name="benchmark-report", cache_policy=NONE)

__all__ = [
    "BENCHMARK_VERSION",
    "BenchmarkConfig",
    "BenchmarkError",
    "EVAL_ENV",
    "GROUPS",
    "MODEL_SCALES",
    "GROUP_TITLES",
    "GroupSpec",
    "Method",
    "PLAN_FORMAT",
    "PROFILE_STEPS",
    "GENERALIST_METHODS",
    "RP1M_METHODS",
    "RP1M_TABLE2",
    "SMALL_SCALE",
    "build_table",
    "evaluate_policy_group",
    "evaluate_task",
    "evaluation_done",
    "group_evaluation_key",
    "plan_benchmark",
    "plan_task",
    "policy_done",
    "policy_key",
    "records_stem",
    "report_task",
    "resolve_config",
    "select_training_sets",
    "song_shards_digest",
    "table_csv",
    "table_markdown",
    "train_policy",
    "train_policy_task",
    "write_plan",
    "write_reports",
]
