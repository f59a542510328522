"""Pipeline steps: library functions and the coarse Prefect tasks that wrap them. `specialist`
(budgets, kinds, run keys), `rollouts`, `collect`, `rlds/` (the shard format), `benchmark/`,
`policy_eval`, `stats/`, `registry/` (DVC), `params` (the one parser of params.yaml), `names`.
Imports: envs and agents; never flows."""
