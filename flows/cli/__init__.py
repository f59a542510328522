"""The `pianoset` command line (typer + rich): one thin module per command group.

Every command that lists or reports takes `--json`: one JSON document on
stdout, nothing else, for scripts. Progress bars go to stderr.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
# TensorFlow's C++ log (its "Unable to register cuDNN factory" errors on a CPU-only
# machine) is silent unless `pianoset --verbose` (flows.cli.common.main) turns it on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The ephemeral Prefect server can take longer than Prefect's 20 s default to
# start on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# No telemetry: these machines reach no network beyond package registries.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# isort: off
from flows.cli import music, video, play, collect, reports, registry, export, sdf  # noqa: E402,F401 (they register their commands, in this order)
# isort: on
from flows.cli.common import app  # noqa: E402

__all__ = ["app"]
