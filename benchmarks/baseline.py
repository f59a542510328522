"""The baseline every benchmark here compares against: robopianist's own env,
loaded with `suite.load` on the same notes and timesteps as our env."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def plain_robopianist_env(chunk, config):
    """robopianist.suite.load on the chunk's notes (it takes a name or a file), with
    the task settings of `config` and no fingering reward."""
    from robopianist import suite

    midi_path = Path(tempfile.mkdtemp(prefix="pianoset_bench_")) / "chunk.mid"
    chunk.midi.save(str(midi_path))
    return suite.load(
        "RoboPianist-debug-TwinkleTwinkleRousseau-v0",  # ignored: midi_file overrides it
        midi_file=midi_path,
        seed=0,
        task_kwargs=dict(
            n_steps_lookahead=config.lookahead_steps,
            disable_fingering_reward=True,
            disable_colorization=True,
            gravity_compensation=config.gravity_compensation,
            reduced_action_space=config.reduced_action_space,
            primitive_fingertip_collisions=config.primitive_fingertip_collisions,
            physics_timestep=config.physics_timestep,
            control_timestep=config.control_timestep,
        ),
    )


def steps_per_second(env, n_steps: int, seed: int = 0) -> float:
    """Control steps/s of `env` under uniform random actions (resets not timed apart)."""
    rng = np.random.default_rng(seed)
    spec = env.action_spec()
    actions = rng.uniform(spec.minimum, spec.maximum, size=(n_steps,) + spec.shape)
    timestep = env.reset()
    start = time.perf_counter()
    for action in actions:
        if timestep.last():
            timestep = env.reset()
        timestep = env.step(action)
    return n_steps / (time.perf_counter() - start)
