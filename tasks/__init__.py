"""Pipeline steps: Prefect tasks and the library code they wrap (training, rollouts, shards)."""
