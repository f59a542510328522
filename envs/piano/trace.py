"""Recording what an episode did in the physics, per control step.

`record_episode(env, act)` steps a PianoEnv or ResidualEnv with any controller
and keeps what `envs.piano.failure` needs (`EpisodeTrace`): goal and pressed keys,
fingertip positions, key joint positions and MuJoCo contacts (a right-hand
geom touching a left-hand geom; a hand geom touching a key, and touching its
side face: contact normal |n_z| < `edge_normal_z`). Contacts are read at the
end of each control step. `replay_actions` replays a fixed action sequence
(a stored rollout's, a nominal trajectory's) in a fresh env of the chunk.
`KeyLayout` holds the key footprints and where the hands start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

N_KEYS = 88
FINGERS_PER_HAND = 5
EDGE_NORMAL_Z = 0.5  # a contact with |normal z| below this touches a key's side face
# Hand bodies that are not fingers (robopianist Shadow hand body names end so).
ARM_BODIES = ("forearm", "wrist", "palm")
HAND_PARTS = ("arm_arm", "arm_finger", "finger_finger")  # `EpisodeTrace.hand_hand_parts` columns


@dataclass(frozen=True)
class KeyLayout:
    """Key footprints (geom boxes at rest, world frame), where the fingertips and forearms start."""

    centers: np.ndarray  # (88, 3)
    half_sizes: np.ndarray  # (88, 3)
    start_fingertips: np.ndarray  # (10, 3), right hand first
    start_forearms: np.ndarray  # (2,) y of the right and left forearm bodies

    @classmethod
    def from_env(cls, env) -> "KeyLayout":
        """From a freshly reset env (keys at rest)."""
        physics, task = env.physics, env.task
        bound = physics.bind([key.geom[0] for key in task.piano.keys])
        forearms = [next(b for b in hand.mjcf_model.find_all("body") if b.name and b.name.endswith("forearm"))
                    for hand in (task.right_hand, task.left_hand)]
        return cls(np.array(bound.xpos, dtype=np.float64), np.array(bound.size, dtype=np.float64),
                   task.fingertip_positions(physics), np.array(physics.bind(forearms).xpos[:, 1], dtype=np.float64))

    @property
    def centre_offsets(self) -> np.ndarray:
        """(2,) y of each hand's fingertip mean minus its forearm's y."""
        tips = self.start_fingertips[:, 1].reshape(2, FINGERS_PER_HAND).mean(axis=1)
        return tips - self.start_forearms

    def over_key(self, points: np.ndarray, key: int) -> np.ndarray:
        """Which of `points` (..., 3) lie over key `key`'s footprint in x-y."""
        d = np.abs(np.asarray(points)[..., :2] - self.centers[key, :2])
        return np.all(d <= self.half_sizes[key, :2], axis=-1)


@dataclass
class EpisodeTrace:
    """What one episode did, per control step (after the step's physics)."""

    goal: np.ndarray  # (T, 88) bool
    pressed: np.ndarray  # (T, 88) bool
    fingertips: np.ndarray  # (T, 10, 3)
    key_qpos: np.ndarray  # (T, 88) key joint positions
    hand_hand: np.ndarray  # (T,) bool: a right-hand geom touches a left-hand geom
    edge_contact: np.ndarray  # (T, 88) bool: a hand geom touches the key's side face
    key_touch: np.ndarray  # (T, 88) bool: a hand geom touches the key at all
    n_contacts: np.ndarray  # (T,) int: all contacts in the model
    actions: np.ndarray  # (T, 39) the actions the piano env received
    layout: KeyLayout | None = None
    # (T, 3) bool: which parts touch when the hands touch (HAND_PARTS; arm: forearm, wrist, palm)
    hand_hand_parts: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return len(self.goal)


class _ContactMap:
    """Geom id -> hand (0 right, 1 left, -1 none), -> key (0-87, -1 none), -> arm (not a finger)."""

    def __init__(self, env) -> None:
        physics, task = env.physics, env.task
        n_geoms = physics.model.ngeom
        self.hand = np.full(n_geoms, -1, dtype=np.int64)
        self.arm = np.zeros(n_geoms, dtype=bool)
        for h, entity in enumerate((task.right_hand, task.left_hand)):
            geoms = entity.mjcf_model.find_all("geom")
            ids = physics.bind(geoms).element_id
            self.hand[ids] = h
            self.arm[ids] = [bool(g.parent.name) and g.parent.name.endswith(ARM_BODIES) for g in geoms]
        self.key = np.full(n_geoms, -1, dtype=np.int64)
        for k, key in enumerate(task.piano.keys):
            self.key[physics.bind(key.find_all("geom")).element_id] = k

    def read(self, physics, edge_normal_z: float) -> tuple[bool, np.ndarray, np.ndarray, int, np.ndarray]:
        contact = physics.data.contact
        n = int(physics.data.ncon)
        edge = np.zeros(N_KEYS, dtype=bool)
        touch = np.zeros(N_KEYS, dtype=bool)
        parts = np.zeros(len(HAND_PARTS), dtype=bool)
        if n == 0:
            return False, edge, touch, 0, parts
        g1, g2 = np.asarray(contact.geom1[:n]), np.asarray(contact.geom2[:n])
        h1, h2, k1, k2 = self.hand[g1], self.hand[g2], self.key[g1], self.key[g2]
        between = (h1 >= 0) & (h2 >= 0) & (h1 != h2)
        hand_hand = bool(np.any(between))
        arms = self.arm[g1[between]].astype(int) + self.arm[g2[between]].astype(int)  # 2, 1, 0 arm geoms
        parts[:] = [np.any(arms == 2), np.any(arms == 1), np.any(arms == 0)]
        key = np.where((h1 >= 0) & (k2 >= 0), k2, np.where((h2 >= 0) & (k1 >= 0), k1, -1))
        side = np.abs(np.asarray(contact.frame[:n, 2])) < edge_normal_z
        touch[key[key >= 0]] = True
        edge[key[(key >= 0) & side]] = True
        return hand_hand, edge, touch, n, parts


def record_episode(env, act: Callable[[int, object], np.ndarray], *,
                   edge_normal_z: float = EDGE_NORMAL_Z) -> EpisodeTrace:
    """Run one episode of `env` (a PianoEnv or ResidualEnv); `act(t, timestep)` gives each action."""
    timestep = env.reset()
    layout = KeyLayout.from_env(env)
    contacts = _ContactMap(env)
    joints = env.physics.bind(env.task.piano.joints)
    rows: dict[str, list] = {k: [] for k in ("goal", "pressed", "fingertips", "key_qpos", "hand_hand",
                                             "edge_contact", "key_touch", "n_contacts", "actions",
                                             "hand_hand_parts")}
    t = 0
    while not timestep.last():
        action = np.asarray(act(t, timestep), dtype=np.float64)
        timestep = env.step(action)
        info = env.step_info()
        hand_hand, edge, touch, n, parts = contacts.read(env.physics, edge_normal_z)
        rows["goal"].append(np.asarray(info["goal_keys"], dtype=bool))
        rows["pressed"].append(np.asarray(info["pressed_keys"], dtype=bool))
        rows["fingertips"].append(env.task.fingertip_positions(env.physics))
        rows["key_qpos"].append(np.array(joints.qpos, dtype=np.float64))
        rows["hand_hand"].append(hand_hand)
        rows["edge_contact"].append(edge)
        rows["key_touch"].append(touch)
        rows["n_contacts"].append(n)
        rows["hand_hand_parts"].append(parts)
        rows["actions"].append(np.asarray(info.get("applied_action", action), dtype=np.float64))
        t += 1
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    return EpisodeTrace(**arrays, layout=layout)


def replay_actions(chunk, env_config, actions: np.ndarray, *, edge_normal_z: float = EDGE_NORMAL_Z) -> EpisodeTrace:
    """Play a fixed action sequence (the last one past its end) in a fresh env of the chunk."""
    from envs.piano.env import make_env

    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or len(actions) == 0:
        raise ValueError(f"{chunk.chunk_id}: replay_actions needs a (T, A) action array, got shape {actions.shape}")
    env = make_env(chunk, env_config, seed=0)
    try:
        return record_episode(env, lambda t, ts: actions[min(t, len(actions) - 1)], edge_normal_z=edge_normal_z)
    finally:
        env.close()
