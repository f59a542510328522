"""Lean simulation path: the RP1M piano task on raw MuJoCo, many lanes per process
(over 400 lines: the env's observation, reward and key tables must be read side by side with the step that uses them).

`LeanPiano(chunk, config, n_lanes)` runs the task of `envs.piano.env.make_env`
(the same compiled model, taken from one make_env physics, and the same notes)
without dm_control's per-substep hooks and observation updates. A control step
sets `ctrl` and runs the substeps as dm_control's legacy step does (mj_step2,
mj_step for the rest, mj_step1, so that positions, contacts and sensors describe
the new state); observation, reward terms and key states are then read from
`MjData` with NumPy, reproducing `PianoEnv`, `PianoTask` and robopianist's
`PianoWithShadowHands` term by term (tests/envs/test_lean.py checks this against
the env). Lanes are MjData of one model with their own step counter and sustain
pedal; `get_state`/`set_state`/`copy_lane` branch them. Open-loop batches
(controls known ahead) are in `envs.piano.lean_rollout`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import mujoco
import numpy as np
from robopianist.models.piano.piano import _KEY_THRESHOLD, _SUSTAIN_THRESHOLD
from robopianist.suite.tasks.piano_with_shadow_hands import (
    _FINGER_CLOSE_ENOUGH_TO_KEY,
    _KEY_CLOSE_ENOUGH_TO_PRESSED,
)

from envs.piano.config import EnvConfig
from envs.piano.env import PianoEnv, make_env, observation_sizes
from envs.piano.lean_tables import GAUSSIAN_SCALE, TaskTables, gaussian_tolerance, tables_from_env
from envs.piano.ot import ot_assign, ot_reward
from envs.piano.spec import ACTION_DIM, OBSERVATION_KEYS

if TYPE_CHECKING:
    from envs.music.chunks import Chunk

# What a lane's state holds: time, qpos, qvel, act, the solver warm start and the
# controls: enough for the next step to repeat bit for bit.
STATE_SPEC = int(mujoco.mjtState.mjSTATE_FULLPHYSICS | mujoco.mjtState.mjSTATE_WARMSTART
                 | mujoco.mjtState.mjSTATE_CTRL)
_PRESS_MARGIN = _KEY_CLOSE_ENOUGH_TO_PRESSED * 10  # robopianist's key-press / sustain tolerance margin
_FINGER_MARGIN = _FINGER_CLOSE_ENOUGH_TO_KEY * 10  # robopianist's fingering tolerance margin
_WARNING_NAMES = tuple(mujoco.mjtWarning.__members__)[: mujoco.mjtWarning.mjNWARNING]


class LeanPhysicsError(RuntimeError):
    """MuJoCo raised a warning while stepping a lane (dm_control's PhysicsError)."""


@dataclass(frozen=True)
class LaneState:
    """One lane's full state: MuJoCo state vector (`STATE_SPEC`), steps taken, pedal."""

    physics: np.ndarray
    t: int
    sustain: float


@dataclass
class LeanStep:
    """One control step of every stepped lane (arrays over those lanes)."""

    reward: np.ndarray  # (N,)
    reward_terms: dict  # name -> (N,), weighted, in Eq. 3 order; they sum to the reward
    pressed_keys: np.ndarray  # (N, 88) bool
    sustain_pressed: np.ndarray  # (N,) bool
    goal_keys: np.ndarray  # (N, 88) bool: the goal the step was scored on
    ot_key_for_finger: np.ndarray  # (N, 10) int8, -1 idle (always -1 unless fingering="ot")
    last: np.ndarray  # (N,) bool: the lane has played its chunk
    observation: np.ndarray | None  # (N, 1144) float32, as `flatten_observation`, or None


class LeanPiano:
    """`n_lanes` copies of the piano task of one chunk, stepped on raw MuJoCo.

    Args:
        chunk: the chunk to play (its notes and `n_steps`).
        config: the task; `physics_timestep` sets the substeps.
        n_lanes: number of independent simulations.
        env: an env of this chunk and config to take the model from (one is built if None).
    """

    def __init__(self, chunk: "Chunk", config: EnvConfig | None = None, n_lanes: int = 1, *,
                 env: PianoEnv | None = None) -> None:
        config = config or EnvConfig()
        if n_lanes < 1:
            raise ValueError(f"LeanPiano({chunk.chunk_id}): n_lanes must be >= 1, got {n_lanes}")
        if env is None:
            env = make_env(chunk, config)
        elif env.config != config or env.task._title != chunk.chunk_id or env.episode_steps != chunk.n_steps:
            raise ValueError(f"LeanPiano({chunk.chunk_id}, {chunk.n_steps} steps): the env given is of "
                             f"{env.task._title!r}, {env.episode_steps} steps, config {env.config} (want {config})")
        self.config = config
        self.chunk_id = chunk.chunk_id
        self.tables: TaskTables = tables_from_env(env)
        self.model: mujoco.MjModel = copy.copy(env.physics.model.ptr)
        self.n_substeps = int(round(config.control_timestep / config.physics_timestep))
        self.n_steps = env.episode_steps
        self._action_spec = env.action_spec()
        self._mode = config.reward.fingering
        self._goal_steps = config.goal_steps
        self._sizes = observation_sizes(config)
        self._prepare_lookups()
        self._initial = mujoco.MjData(self.model)
        self._reset_data(self._initial)
        self._datas = [mujoco.MjData(self.model) for _ in range(n_lanes)]
        self._scratch = mujoco.MjData(self.model)
        self._t = np.zeros(n_lanes, dtype=np.int64)
        self._sustain = np.zeros(n_lanes)
        self._ot_key = np.full((n_lanes, 10), -1, dtype=np.int8)
        self._terms: list[dict] = [{} for _ in range(n_lanes)]
        self.reset()

    def _prepare_lookups(self) -> None:
        tab = self.tables
        adr = tab.key_qpos_adr
        contiguous = np.array_equal(adr, np.arange(adr[0], adr[0] + len(adr)))
        self._key_qpos = slice(int(adr[0]), int(adr[0]) + len(adr)) if contiguous else adr
        self._on_keys = [np.flatnonzero(row[:-1]) for row in tab.goal]
        self._off_mask = tab.goal[:, :-1] == 0
        self._sustain_values: dict = {}
        a, b = tab.right_forearm_geom, tab.left_forearm_geom
        self._forearm_pair = (a[:, None] & b[None, :]) | (b[:, None] & a[None, :])
        forces, velocities = zip(*tab.power_sensor_adr)
        self._force_adr, self._velocity_adr = np.concatenate(forces), np.concatenate(velocities)
        bounds = np.cumsum([0] + [len(f) for f in forces])
        self._hand_power = [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]

    def spawn(self, n_lanes: int) -> "LeanPiano":
        """A new `LeanPiano` of the same chunk, config and (shared) model with `n_lanes`
        fresh lanes at the episode start: no env to build."""
        if n_lanes < 1:
            raise ValueError(f"LeanPiano({self.chunk_id}).spawn: n_lanes must be >= 1, got {n_lanes}")
        new = copy.copy(self)
        new._sustain_values = {}
        new._datas = [mujoco.MjData(self.model) for _ in range(n_lanes)]
        new._scratch = mujoco.MjData(self.model)
        new._t = np.zeros(n_lanes, dtype=np.int64)
        new._sustain = np.zeros(n_lanes)
        new._ot_key = np.full((n_lanes, 10), -1, dtype=np.int8)
        new._terms = [{} for _ in range(n_lanes)]
        new.reset()
        return new

    # --- lanes and state ------------------------------------------------------------

    @property
    def n_lanes(self) -> int:
        return len(self._datas)

    @property
    def obs_dim(self) -> int:
        """Length of the flat RP1M observation (1144 with the default goal steps)."""
        return sum(self._sizes.values())

    def data(self, lane: int) -> mujoco.MjData:
        """The lane's MjData (read it; write it only through this class)."""
        return self._datas[lane]

    def action_spec(self):
        """The env's 39-dim action spec (dm_env BoundedArray)."""
        return self._action_spec

    @property
    def t(self) -> np.ndarray:
        """(N,) control steps each lane has taken in its episode."""
        return self._t.copy()

    def _reset_data(self, data: mujoco.MjData) -> None:
        # dm_control's reset_context: mj_resetData, then mj_forward twice with actuation off.
        mujoco.mj_resetData(self.model, data)
        flags = self.model.opt.disableflags
        self.model.opt.disableflags = flags | mujoco.mjtDisableBit.mjDSBL_ACTUATION
        try:
            mujoco.mj_forward(self.model, data)
            mujoco.mj_forward(self.model, data)
        finally:
            self.model.opt.disableflags = flags

    def reset(self, lanes: Sequence[int] | None = None) -> np.ndarray:
        """Start the episode again in `lanes` (all if None); their (n, 1144) observations."""
        lanes = self._lanes(lanes)
        for i in lanes:
            mujoco.mj_copyData(self._datas[i], self.model, self._initial)
            self._t[i] = 0
            self._sustain[i] = 0.0
            self._ot_key[i] = -1
            self._terms[i] = {}
        return self._flat(lanes)

    def get_state(self, lane: int) -> LaneState:
        d = self._datas[lane]
        vec = np.empty(mujoco.mj_stateSize(self.model, STATE_SPEC))
        mujoco.mj_getState(self.model, d, vec, STATE_SPEC)
        return LaneState(vec, int(self._t[lane]), float(self._sustain[lane]))

    def set_state(self, lane: int, state: LaneState) -> None:
        """Put `state` into `lane`; positions, contacts and sensors are recomputed
        (mj_step1), so the next step continues exactly as from the original."""
        size = mujoco.mj_stateSize(self.model, STATE_SPEC)
        vec = np.asarray(state.physics, dtype=np.float64)
        if vec.shape != (size,):
            raise ValueError(f"set_state(lane {lane}): state vector of shape {vec.shape}, expected ({size},)")
        if not 0 <= state.t <= self.n_steps:
            raise ValueError(f"set_state(lane {lane}): t={state.t} outside the episode (0..{self.n_steps})")
        d = self._datas[lane]
        mujoco.mj_setState(self.model, d, vec, STATE_SPEC)
        mujoco.mj_step1(self.model, d)
        self._t[lane] = state.t
        self._sustain[lane] = state.sustain
        self._ot_key[lane] = -1
        self._terms[lane] = {}

    def copy_lane(self, source: int, targets: Sequence[int] | None = None) -> None:
        """Make `targets` (all other lanes if None) exact copies of lane `source`."""
        if targets is None:
            targets = [i for i in range(self.n_lanes) if i != source]
        src = self._datas[source]
        for i in targets:
            if i == source:
                continue
            mujoco.mj_copyData(self._datas[i], self.model, src)
            self._t[i] = self._t[source]
            self._sustain[i] = self._sustain[source]
            self._ot_key[i] = self._ot_key[source]
            self._terms[i] = dict(self._terms[source])

    # --- stepping ---------------------------------------------------------------------

    def step(self, actions: np.ndarray, lanes: Sequence[int] | None = None, *,
             observe: bool = True) -> LeanStep:
        """One control step of `lanes` (all if None) with `actions` (n, 39).

        Actions are used as the env uses them: the 38 hand values become `ctrl`
        (MuJoCo clamps them to each actuator's range; with `four_fingers` the
        little-finger values are replaced by the curl), the last one is the
        sustain pedal (pressed when >= 0.5, stored unclipped as its state).
        """
        lanes = self._lanes(lanes)
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (len(lanes), ACTION_DIM):
            raise ValueError(f"LeanPiano.step: actions of shape {actions.shape}, "
                             f"expected ({len(lanes)}, {ACTION_DIM})")
        over = [i for i in lanes if self._t[i] >= self.n_steps]
        if over:
            raise ValueError(f"LeanPiano({self.chunk_id}) lanes {over}: the episode is over "
                             f"({self.n_steps} steps); reset or set_state first")
        n = len(lanes)
        out = LeanStep(
            reward=np.zeros(n), reward_terms={}, pressed_keys=np.zeros((n, 88), bool),
            sustain_pressed=np.zeros(n, bool), goal_keys=np.zeros((n, 88), bool),
            ot_key_for_finger=np.full((n, 10), -1, np.int8), last=np.zeros(n, bool), observation=None,
        )
        for j, (i, action) in enumerate(zip(lanes, actions)):
            k = int(self._t[i])
            self._advance(i, action)
            terms, pressed = self._score(i, k)
            for value in terms.values():  # robopianist's CompositeReward.compute: summed in order
                out.reward[j] += value
            for name, value in terms.items():
                out.reward_terms.setdefault(name, np.zeros(n))[j] = value
            out.pressed_keys[j] = pressed
            out.sustain_pressed[j] = self._sustain[i] >= _SUSTAIN_THRESHOLD
            out.goal_keys[j] = self.tables.goal[k, :88] > 0
            out.ot_key_for_finger[j] = self._ot_key[i]
            out.last[j] = self._t[i] == self.n_steps
        if observe:
            out.observation = self._flat(lanes)
        return out

    def _advance(self, i: int, action: np.ndarray) -> None:
        tab, m, d = self.tables, self.model, self._datas[i]
        ctrl = action[:-1]
        if tab.curl_index.size:
            ctrl = ctrl.copy()
            ctrl[tab.curl_index] = tab.curl_value
        d.ctrl[tab.actuator_ids] = ctrl
        self._sustain[i] = action[-1]
        before = d.warning.number.copy()
        # dm_control's legacy step (engine.Physics._step_with_up_to_date_position_velocity):
        # mj_step1 of the previous step already ran at this state.
        mujoco.mj_step2(m, d)
        if self.n_substeps > 1:
            mujoco.mj_step(m, d, self.n_substeps - 1)
        mujoco.mj_step1(m, d)
        self._t[i] += 1
        raised = d.warning.number > before
        if raised.any():
            names = ", ".join(np.compress(raised, _WARNING_NAMES))
            raise LeanPhysicsError(f"LeanPiano({self.chunk_id}) lane {i} step {self._t[i] - 1}: "
                                   f"MuJoCo warning(s) {names}")

    # --- reading the task from MjData -------------------------------------------------

    def _key_state(self, d: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Piano key state (clipped joint positions) and activation, as `Piano._update_key_state`."""
        tab = self.tables
        state = np.minimum(np.maximum(d.qpos[self._key_qpos], tab.key_range[:, 0]), tab.key_range[:, 1])  # np.clip
        return state, np.abs(state - tab.key_range[:, 1]) <= _KEY_THRESHOLD

    def _score(self, i: int, k: int) -> tuple[dict, np.ndarray]:
        """Reward terms of lane i after step k (goal row k), and its pressed keys; each term
        in the operations of robopianist's / `PianoTask`'s, so that the values agree to the bit."""
        tab, d, cfg = self.tables, self._datas[i], self.config.reward
        state, pressed = self._key_state(d)
        on = self._on_keys[k]
        terms: dict[str, float] = {}
        self._ot_key[i] = -1
        if self._mode == "ot":
            fingertips = d.site_xpos[tab.fingertip_site_ids][tab.ot_fingers]
            result = ot_assign(fingertips, d.geom_xpos[tab.key_geom_ids[on]] + tab.key_press_offset[on], on)
            self._ot_key[i, tab.ot_fingers] = result.key_for_finger
            terms["ot"] = ot_reward(result, cfg.ot_reduction)
        elif self._mode == "human":
            terms["fingering"] = self._human_fingering_reward(d, k)
        press = 0.0
        if on.size > 0:
            # x >= 0 (goal 1, clipped state <= 1): dm_control's tolerance, its x > upper branch
            x = tab.goal[k, on] - state[on] / tab.key_range[on, 1]
            value = np.exp(-0.5 * ((x - _KEY_CLOSE_ENOUGH_TO_PRESSED) / _PRESS_MARGIN * GAUSSIAN_SCALE) ** 2)
            value[x <= _KEY_CLOSE_ENOUGH_TO_PRESSED] = 1.0
            press += 0.5 * value.mean()
        press += 0.5 * (1 - float((pressed & self._off_mask[k]).any()))
        terms["press"] = press
        terms["sustain"] = self._sustain_reward(tab.goal[k, -1], self._sustain[i] >= _SUSTAIN_THRESHOLD)
        terms["collision"] = cfg.collision_coef * (0.0 if self._hands_collide(d) else 1.0)
        power = np.abs(d.sensordata[self._force_adr]) * np.abs(d.sensordata[self._velocity_adr])
        energy = 0.0
        for hand in self._hand_power:
            energy -= cfg.energy_coef * np.sum(power[hand])
        terms["energy"] = energy
        self._terms[i] = terms
        return terms, pressed

    def _human_fingering_reward(self, d: mujoco.MjData, k: int) -> float:
        tab = self.tables
        sites, keys = tab.human_sites[k], tab.human_keys[k]
        if not keys.size:
            return 0.0
        points = d.geom_xpos[tab.key_geom_ids[keys]] + tab.key_press_offset[keys]
        diff = points - d.site_xpos[tab.fingertip_site_ids[sites]]
        dist = [float(np.linalg.norm(row)) for row in diff]  # one norm per key, as robopianist
        return float(np.mean(gaussian_tolerance(np.hstack(dist), _FINGER_CLOSE_ENOUGH_TO_KEY, _FINGER_MARGIN)))

    def _sustain_reward(self, goal: float, pressed: bool) -> float:
        key = (float(goal), bool(pressed))
        if key not in self._sustain_values:  # a handful of (goal, pedal) pairs: computed once each
            self._sustain_values[key] = float(gaussian_tolerance(key[0] - float(key[1]), _KEY_CLOSE_ENOUGH_TO_PRESSED,
                                                                 _PRESS_MARGIN))
        return self._sustain_values[key]

    def _hands_collide(self, d: mujoco.MjData) -> bool:
        """mujoco_utils.collision_utils.has_collision between the two forearms' geoms."""
        if d.ncon == 0:
            return False
        con = d.contact
        return bool((self._forearm_pair[con.geom1, con.geom2] & (con.dist <= self.tables.collision_margin)).any())

    # --- observations and accessors ---------------------------------------------------

    def observation(self, lane: int) -> "OrderedDict[str, np.ndarray]":
        """The lane's RP1M observation dict (float64), as `PianoEnv` gives it."""
        tab, d = self.tables, self._datas[lane]
        row = min(int(self._t[lane]), self.n_steps - 1)  # the env keeps the last goal after the end
        window = tab.goal[row: row + self._goal_steps]
        state, _ = self._key_state(d)
        obs = OrderedDict()
        obs["piano_goal"] = window[:, :88].ravel()
        obs["sustain_goal"] = window[:, 88].copy()
        obs["piano_state"] = state / tab.key_range[:, 1]
        obs["sustain_state"] = np.array([self._sustain[lane]])
        obs["fingertip_positions"] = d.site_xpos[tab.fingertip_site_ids].ravel()
        obs["hand_state"] = d.qpos[tab.hand_qpos_adr]
        return obs

    def _flat(self, lanes: Sequence[int]) -> np.ndarray:
        out = np.empty((len(lanes), sum(self._sizes.values())), dtype=np.float32)
        for j, i in enumerate(lanes):
            obs = self.observation(i)
            out[j] = np.concatenate([obs[k] for k in OBSERVATION_KEYS])
        return out

    def observations(self, lanes: Sequence[int] | None = None) -> np.ndarray:
        """(n, 1144) float32 observations, as `envs.piano.env.flatten_observation`."""
        return self._flat(self._lanes(lanes))

    def step_info(self, lane: int) -> dict:
        """The lane's last-step extras, as `PianoEnv.step_info()`."""
        k = int(self._t[lane]) - 1
        if k < 0 or not self._terms[lane]:
            raise ValueError(f"LeanPiano lane {lane}: no step since the last reset / set_state")
        _, pressed = self._key_state(self._datas[lane])
        return {
            "reward_terms": dict(self._terms[lane]),
            "ot_key_for_finger": self._ot_key[lane].copy(),
            "pressed_keys": pressed,
            "sustain_pressed": bool(self._sustain[lane] >= _SUSTAIN_THRESHOLD),
            "goal_keys": self.tables.goal[k, :88] > 0,
        }

    def key_qpos(self, lanes: Sequence[int] | None = None) -> np.ndarray:
        """(n, 88) raw key joint positions (radians, not clipped)."""
        return np.stack([self._datas[i].qpos[self._key_qpos] for i in self._lanes(lanes)])

    def pressed_keys(self, lanes: Sequence[int] | None = None) -> np.ndarray:
        """(n, 88) bool: keys within 0.5 degrees of their upper limit (robopianist's activation)."""
        return np.stack([self._key_state(self._datas[i])[1] for i in self._lanes(lanes)])

    def fingertip_positions(self, lanes: Sequence[int] | None = None) -> np.ndarray:
        """(n, 10, 3) fingertip sites in world coordinates, right hand first."""
        return np.stack([self._datas[i].site_xpos[self.tables.fingertip_site_ids] for i in self._lanes(lanes)])

    def goal_keys(self) -> np.ndarray:
        """(n_steps, 88) bool: the keys that should be down at each episode step."""
        return self.tables.goal[: self.n_steps, :88] > 0

    def _lanes(self, lanes: Sequence[int] | None) -> list[int]:
        if lanes is None:
            return list(range(self.n_lanes))
        lanes = [int(i) for i in lanes]
        bad = [i for i in lanes if not 0 <= i < self.n_lanes]
        if bad:
            raise ValueError(f"LeanPiano: lanes {bad} do not exist (n_lanes={self.n_lanes})")
        return lanes
