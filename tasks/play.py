"""What `pianoset render` plays: a finished specialist of any kind in its own env, or a stored
episode's actions replayed in the env of its chunk. Each player is (env, next_action, info)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from envs.music.chunks import load_chunk
from envs.piano.config import EnvConfig
from envs.piano.env import make_env

NextAction = Callable[[dict, int], np.ndarray]


def specialist_player(specialist_dir: str | Path) -> tuple[object, NextAction, dict]:
    """The specialist's deterministic policy in the env it was trained in: a `PianoEnv` (droq) or a
    `ResidualEnv` around its nominal (residual: the residual's mode; ik: a zero residual)."""
    from agents import droq
    from agents.common import to_env_action
    from envs.control.residual import flat_observation_fn
    from tasks.specialist import load_specialist, specialist_env

    specialist_dir = Path(specialist_dir)
    state, manifest = load_specialist(specialist_dir)
    chunk = load_chunk(specialist_dir / "chunk.json")
    env = specialist_env(manifest, chunk, work_dir=specialist_dir, lean=False)  # rendered: dm_control physics
    spec = env.action_spec()
    featurize = flat_observation_fn(env)

    def next_action(obs: dict, t: int) -> np.ndarray:
        if state is None:  # ik: the nominal alone
            return np.zeros(spec.shape, np.float64)
        action = np.asarray(droq.eval_actions(state, featurize(obs)))
        return to_env_action(action, spec.minimum, spec.maximum)

    info = {"specialist_id": manifest["specialist_id"], "kind": manifest.get("kind", "droq"),
            "chunk_id": chunk.chunk_id}
    return env, next_action, info


def episode_player(song_dir: str | Path, index: int, chunk_file: str | Path) -> tuple[object, NextAction, dict]:
    """Episode `index` of a song's shard folder, its stored actions (what the piano received)
    replayed in a fresh env of the chunk it was collected on. Raises ValueError naming the problem."""
    from tasks.rlds.reader import iterate_episodes

    chunk = load_chunk(chunk_file)
    stored = next((ep for i, ep in enumerate(iterate_episodes([Path(song_dir)])) if i == index), None)
    if stored is None:
        raise ValueError(f"{song_dir}: has no episode {index}")
    if stored.metadata["chunk_id"] != chunk.chunk_id:
        raise ValueError(f"episode {index} of {song_dir} was collected on chunk {stored.metadata['chunk_id']}, "
                         f"not {chunk.chunk_id} ({chunk_file})")
    env = make_env(chunk, EnvConfig())
    actions = stored.steps["action"]

    def next_action(obs: dict, t: int) -> np.ndarray:
        return actions[t]

    info = {"chunk_id": chunk.chunk_id, "stored_f1": float(stored.metadata["f1"]),
            "rollout_seed": int(stored.metadata["rollout_seed"])}
    return env, next_action, info
