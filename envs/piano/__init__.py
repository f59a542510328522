"""The RP1M piano task: sizes and names (`spec`, no MuJoCo), `EnvConfig`, robopianist's task with the
OT fingering reward (`task`, `ot`), the dm_env factory (`env`), metrics, a rollout loop and rendering.
Imports: envs.atomic and envs.music (chunks) only."""
