"""The simulated world, in three rooms: `piano` (the RP1M task), `music` (songs, catalog, chunks),
`control` (fingering plans, IK, nominal controllers, the residual env); `atomic` holds the one
atomic file write and folder swap every layer uses. Imports nothing above it (agents, tasks, flows)."""
