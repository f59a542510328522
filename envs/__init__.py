"""The simulated world, in three rooms: `piano` (the RP1M task), `music` (songs, catalog, chunks),
`control` (fingering plans, IK, nominal controllers, the residual env); `atomic` holds the one
atomic file write and folder swap every layer uses, `checks` the config field checks every layer's
configs share. Imports nothing above it (agents, tasks, flows)."""

import contextlib as _contextlib
import sys as _sys

# pyfluidsynth (imported by robopianist.music) prints "'fluidsynth' was found at ..." on stdout
# when the CI variable is set; stdout carries `pianoset ... --json` documents, so import it here
# once with its print sent to stderr.
with _contextlib.redirect_stdout(_sys.stderr):
    try:
        import fluidsynth  # noqa: F401
    except ImportError:  # robopianist reports a missing libfluidsynth itself, with its own message
        pass
