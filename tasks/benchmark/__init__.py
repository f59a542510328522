"""The policy benchmark of RP1M section 5 (Table 2): `config`, `plan`, `train`, `evaluate`, `report`,
each idempotent with run-independent keys; steps, caching and layout: tasks/benchmark/README.md.
Imports: envs, agents, tasks.rlds and tasks.policy_eval; never flows."""
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
from tasks.benchmark.sdf import pretrain_sdf
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
sdf_task = task(pretrain_sdf, name="pretrain-goal-sdf", cache_policy=NONE)

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
    "pretrain_sdf",
    "sdf_task",
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
