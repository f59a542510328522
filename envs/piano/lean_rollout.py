"""Open-loop batches on the lean path, and their key-press metrics.

When the controls are known ahead (the `ik` specialist's nominal plus noise,
a planner's candidate sequences), nothing but the key states needs reading
between control steps. `open_loop(lean, actions, start)` plays (N, T, 39)
actions from one lane state and returns the key joint positions and pressed
keys of every step, with one of three drivers (same results to the bit):

- "step":    a loop of `mj_step(model, data, nstep=substeps)` per lane and step;
- "rollout": `mujoco.rollout.rollout`, MuJoCo's threaded open-loop rollout, on
             the whole (N, T * substeps) control array at once (it records the
             full state after every physics step, so lanes go in groups that
             keep that buffer under `ROLLOUT_BUFFER_BYTES`);
- "batch":   `mujoco.batch.Batch` (MuJoCo >= 3.17), all lanes advanced by one
             threaded call per control step, state rows kept between calls.

`benchmarks/cost.py` measures them. `lane_prf` / `lane_metrics` are the
per-step and episode precision/recall/F1 of `envs.piano.metrics`, for many lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import mujoco.batch
import mujoco.rollout
import numpy as np
from robopianist.models.piano.piano import _KEY_THRESHOLD, _SUSTAIN_THRESHOLD

from envs.piano.lean import STATE_SPEC, LaneState, LeanPhysicsError, LeanPiano
from envs.piano.metrics import per_step_prf
from envs.piano.spec import ACTION_DIM

METHODS = ("step", "rollout", "batch")
ROLLOUT_BUFFER_BYTES = 256 * 2**20  # most memory one mujoco.rollout call may record into
_FULL = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
_INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)


@dataclass
class OpenLoopResult:
    key_qpos: np.ndarray  # (N, T, 88) key joint positions after each control step (not clipped)
    pressed_keys: np.ndarray  # (N, T, 88) bool, robopianist's activation
    sustain_pressed: np.ndarray  # (N, T) bool
    start_t: int  # episode step of the first action (goal row of step j is start_t + j)
    final_states: list | None  # LaneState per lane after the last step ("rollout": None)


def pressed_from_qpos(lean: LeanPiano, key_qpos: np.ndarray) -> np.ndarray:
    """robopianist's key activation from raw key joint positions (..., 88)."""
    lo, hi = lean.tables.key_range[:, 0], lean.tables.key_range[:, 1]
    return np.abs(np.clip(key_qpos, lo, hi) - hi) <= _KEY_THRESHOLD


def _controls(lean: LeanPiano, actions: np.ndarray) -> np.ndarray:
    """(N, T, nu) ctrl from (N, T, 39) actions, as `LeanPiano.step` applies them."""
    tab = lean.tables
    hands = actions[..., :-1].copy()
    if tab.curl_index.size:
        hands[..., tab.curl_index] = tab.curl_value
    ctrl = np.zeros(actions.shape[:2] + (lean.model.nu,))
    ctrl[..., tab.actuator_ids] = hands
    return ctrl


def _state_vector(lean: LeanPiano, state: LaneState, spec: int) -> tuple[np.ndarray, np.ndarray]:
    """The lane state as an mjtState `spec` vector, and its solver warm start."""
    scratch = lean._scratch
    mujoco.mj_setState(lean.model, scratch, np.asarray(state.physics, np.float64), STATE_SPEC)
    vec = np.empty(mujoco.mj_stateSize(lean.model, spec))
    mujoco.mj_getState(lean.model, scratch, vec, spec)
    return vec, scratch.qacc_warmstart.copy()


def open_loop(lean: LeanPiano, actions: np.ndarray, start: LaneState | None = None, *,
              method: str = "step", nthread: int = 1) -> OpenLoopResult:
    """Play `actions` (N, T, 39) from `start` (default: the episode's first state).

    `nthread` threads for "rollout" and "batch" (1: the calling thread only).
    The lean object's lanes are not touched.
    """
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 3 or actions.shape[-1] != ACTION_DIM:
        raise ValueError(f"open_loop({lean.chunk_id}): actions of shape {actions.shape}, "
                         f"expected (N, T, {ACTION_DIM})")
    if method not in METHODS:
        raise ValueError(f"open_loop({lean.chunk_id}): method {method!r}, expected one of {METHODS}")
    if nthread < 1:
        raise ValueError(f"open_loop({lean.chunk_id}): nthread must be >= 1, got {nthread}")
    if start is None:
        start = _initial_state(lean)
    n_lanes, n_steps = actions.shape[:2]
    if start.t + n_steps > lean.n_steps:
        raise ValueError(f"open_loop({lean.chunk_id}): {n_steps} steps from step {start.t} run past the "
                         f"episode's {lean.n_steps}")
    ctrl = _controls(lean, actions)
    driver = {"step": _run_step, "rollout": _run_rollout, "batch": _run_batch}[method]
    key_qpos, finals = driver(lean, start, ctrl, nthread)
    return OpenLoopResult(
        key_qpos=key_qpos,
        pressed_keys=pressed_from_qpos(lean, key_qpos),
        sustain_pressed=actions[..., -1] >= _SUSTAIN_THRESHOLD,
        start_t=start.t,
        final_states=None if finals is None else [
            LaneState(vec, start.t + n_steps, float(a)) for vec, a in zip(finals, actions[:, -1, -1])],
    )


def _initial_state(lean: LeanPiano) -> LaneState:
    vec = np.empty(mujoco.mj_stateSize(lean.model, STATE_SPEC))
    mujoco.mj_getState(lean.model, lean._initial, vec, STATE_SPEC)
    return LaneState(vec, 0, 0.0)


def _run_step(lean: LeanPiano, start: LaneState, ctrl: np.ndarray, nthread: int):
    del nthread  # one thread
    m, d, adr = lean.model, lean._scratch, lean.tables.key_qpos_adr
    n_lanes, n_steps = ctrl.shape[:2]
    key_qpos = np.empty((n_lanes, n_steps, len(adr)))
    finals = np.empty((n_lanes, mujoco.mj_stateSize(m, STATE_SPEC)))
    for n in range(n_lanes):
        mujoco.mj_setState(m, d, np.asarray(start.physics, np.float64), STATE_SPEC)
        before = d.warning.number.copy()
        for t in range(n_steps):
            d.ctrl[:] = ctrl[n, t]
            mujoco.mj_step(m, d, lean.n_substeps)  # its mj_step1 redoes what set_state left stale
            key_qpos[n, t] = d.qpos[adr]
        if (d.warning.number > before).any():
            raise LeanPhysicsError(f"open_loop({lean.chunk_id}) lane {n}: MuJoCo warnings {d.warning.number}")
        mujoco.mj_getState(m, d, finals[n], STATE_SPEC)
    return key_qpos, finals


def _run_rollout(lean: LeanPiano, start: LaneState, ctrl: np.ndarray, nthread: int):
    m, sub, adr = lean.model, lean.n_substeps, lean.tables.key_qpos_adr
    n_lanes, n_steps = ctrl.shape[:2]
    initial, warmstart = _state_vector(lean, start, _FULL)
    qpos_offset = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME)
    n_state = len(initial)
    per_lane = n_steps * sub * (n_state + m.nsensordata) * 8
    group = max(1, min(n_lanes, ROLLOUT_BUFFER_BYTES // per_lane))
    datas = [mujoco.MjData(m) for _ in range(nthread)]
    key_qpos = np.empty((n_lanes, n_steps, len(adr)))
    with mujoco.rollout.Rollout(nthread=nthread if nthread > 1 else 0) as runner:
        for lo in range(0, n_lanes, group):
            hi = min(n_lanes, lo + group)
            control = np.repeat(ctrl[lo:hi], sub, axis=1)  # one control per physics step
            states, _ = runner.rollout(m, datas, initial[None], control,
                                       initial_warmstart=warmstart[None])
            key_qpos[lo:hi] = states[:, sub - 1::sub, qpos_offset + adr]
            if not np.isfinite(states[:, -1]).all():
                raise LeanPhysicsError(f"open_loop({lean.chunk_id}): rollout of lanes {lo}..{hi - 1} diverged")
    return key_qpos, None


def _run_batch(lean: LeanPiano, start: LaneState, ctrl: np.ndarray, nthread: int):
    m, adr = lean.model, lean.tables.key_qpos_adr
    n_lanes, n_steps = ctrl.shape[:2]
    row, _ = _state_vector(lean, start, _INTEGRATION)  # carries the warm start
    batch = mujoco.batch.Batch(m, nsim=n_lanes, nthread=nthread)
    batch.state[:] = row
    key_qpos = np.empty((n_lanes, n_steps, len(adr)))
    qpos, batch_ctrl = batch.bind("qpos"), batch.bind("ctrl")
    warnings_before = np.array(batch.warning, copy=True)
    for t in range(n_steps):
        batch_ctrl[:] = ctrl[:, t]
        batch.step(nstep=lean.n_substeps)
        key_qpos[:, t] = qpos[:, adr]
    if (np.asarray(batch.warning) > warnings_before).any():
        raise LeanPhysicsError(f"open_loop({lean.chunk_id}): MuJoCo warnings in the batch")
    finals = np.empty((n_lanes, mujoco.mj_stateSize(m, STATE_SPEC)))
    scratch = lean._scratch
    for n in range(n_lanes):
        mujoco.mj_setState(m, scratch, batch.state[n], _INTEGRATION)
        mujoco.mj_getState(m, scratch, finals[n], STATE_SPEC)
    return key_qpos, finals


def lane_prf(goal: np.ndarray, pressed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step precision, recall, F1 (each (N, T)) of pressed keys (N, T, 88)
    against one goal (T, 88), exactly as `envs.piano.metrics.per_step_prf`."""
    pressed = np.asarray(pressed).astype(bool)
    goal = np.asarray(goal).astype(bool)
    if pressed.ndim != 3 or goal.shape != pressed.shape[1:]:
        raise ValueError(f"lane_prf: pressed {pressed.shape} needs (N, T, 88) and goal (T, 88), got {goal.shape}")
    return per_step_prf(np.broadcast_to(goal, pressed.shape), pressed)


def lane_metrics(goal: np.ndarray, pressed: np.ndarray) -> dict[str, np.ndarray]:
    """Episode precision/recall/F1 per lane ((N,) each): per-step values averaged over T,
    as `envs.piano.metrics.key_press_metrics`."""
    precision, recall, f1 = lane_prf(goal, pressed)
    if precision.shape[1] == 0:
        raise ValueError("lane_metrics: no steps")
    return {"precision": precision.mean(1), "recall": recall.mean(1), "f1": f1.mean(1)}


def result_metrics(lean: LeanPiano, result: OpenLoopResult) -> dict[str, np.ndarray]:
    """`lane_metrics` of an open-loop result against the chunk's goal for its steps."""
    n_steps = result.pressed_keys.shape[1]
    return lane_metrics(lean.goal_keys()[result.start_t: result.start_t + n_steps], result.pressed_keys)
