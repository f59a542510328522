"""Learning algorithms as pure JAX functions, one folder each with config, networks, losses, agent:
`droq` (the specialists, with its env loop in `train`), `bc`, `ibc`, `bc_rnn`, `diffusion`; `common`
holds the base policy config, the policy contract and its save/load, networks, replay, checkpoints.
Imports: envs only; never Prefect."""
