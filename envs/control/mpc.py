"""Sampling MPC on the lean path: an optimised action trajectory around a nominal one.

`optimise_trajectory(chunk, env_config, nominal_actions, config, seed)` runs
predictive sampling (MuJoCo MPC's simplest planner) in raw-MuJoCo copies of the
piano task (`envs.piano.lean.LeanPiano`): at every control step the current plan
and noisy copies of it (`MPCConfig`) are played from the executed state, scored
by the key presses they produce over the horizon, and the best plan's first
action is executed. The executed actions are an open-loop trajectory (the task is
deterministic, so replaying them gives the same F1); the `mpc` specialist kind
stores it as the nominal of its rollouts (`tasks.specialist`).

Long chunks checkpoint (executed prefix, plan, lane state, rng state) to a file
every few steps and continue from it after a kill, to the same result
(`envs.control.mpc_checkpoint`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import mujoco
import numpy as np
from robopianist.models.piano.piano import _KEY_THRESHOLD

from envs.control.mpc_checkpoint import MPCProgress, load_progress, progress_key, save_progress
from envs.control.mpc_config import MPCConfig
from envs.control.mpc_reach import ReachCandidates
from envs.piano.config import EnvConfig
from envs.piano.lean import STATE_SPEC, LeanPiano
from envs.piano.metrics import key_press_metrics, per_step_prf
from envs.piano.spec import ACTION_DIM

if TYPE_CHECKING:
    from envs.music.chunks import Chunk

log = logging.getLogger(__name__)

HAND_ACTIONS = 19  # actions per hand (right hand first), then the sustain pedal (envs.piano.spec)
WINNERS = ("plan", "sample", "hands", "shift", "reach", "alternative")  # what the executed action came from (MPCResult.winner)


class MPCStopped(Exception):
    """`should_stop()` asked `optimise_trajectory` to stop; its checkpoint holds the step reached."""

    def __init__(self, step: int) -> None:
        super().__init__(f"MPC stopped after step {step}")
        self.step = step


@dataclass
class MPCResult:
    """What `optimise_trajectory` found for one chunk."""

    actions: np.ndarray  # (T, 39) the executed actions: the optimised open-loop trajectory
    precision: np.ndarray  # (T,) per-step key-press precision of the executed episode
    recall: np.ndarray  # (T,)
    f1: np.ndarray  # (T,)
    plan_score: np.ndarray  # (T,) score of the kept plan (no new candidate) at each step
    best_score: np.ndarray  # (T,) score of the executed candidate
    winner: np.ndarray  # (T,) int8 index into WINNERS
    iteration_log: list = field(default_factory=list)  # per sampling round: steps it improved, mean gain
    replay: dict = field(default_factory=dict)  # precision/recall/f1 of the actions replayed from a fresh lane
    cpu_seconds: float = 0.0  # process CPU time of the optimisation, summed over resumed runs
    resumed_from: int | None = None  # step the last run continued from (None: from the start)

    @property
    def metrics(self) -> dict:
        """Episode precision/recall/F1 of the executed steps (per-step means)."""
        return {"precision": float(self.precision.mean()), "recall": float(self.recall.mean()),
                "f1": float(self.f1.mean())}


class _Planner:
    """Candidate rollouts and scores for one chunk (all lanes share the lean model)."""

    def __init__(self, lean: LeanPiano, nominal: np.ndarray, config: MPCConfig) -> None:
        self.lean, self.config, self.nominal = lean, config, nominal
        tab = lean.tables
        spec = lean.action_spec()
        self.low, self.high = np.asarray(spec.minimum, np.float64), np.asarray(spec.maximum, np.float64)
        self.half = 0.5 * (self.high - self.low)
        self.half[-1] = 0.0  # no noise on the sustain pedal
        self.goal = lean.goal_keys()
        self.key_hi = tab.key_range[:, 1]
        self.key_lo = tab.key_range[:, 0]
        self.adr = tab.key_qpos_adr
        self.data = mujoco.MjData(lean.model)
        mujoco.mj_forward(lean.model, self.data)
        self.key_points = self.data.geom_xpos[tab.key_geom_ids] + tab.key_press_offset  # keys do not move sideways
        self.state_size = mujoco.mj_stateSize(lean.model, STATE_SPEC)
        self.offsets: np.ndarray | None = None  # added to executed actions (optimise_trajectory)
        self.alternatives: np.ndarray | None = None  # (A, T, 39) other nominals (optimise_trajectory)
        self.reach = ReachCandidates(lean, self.low, self.high) if config.reach_scales else None

    def controls(self, actions: np.ndarray) -> np.ndarray:
        """(N, h, nu) ctrl of (N, h, 39) actions, as `LeanPiano.step` applies them."""
        tab = self.lean.tables
        hands = actions[..., :-1]
        if tab.curl_index.size:
            hands = hands.copy()
            hands[..., tab.curl_index] = tab.curl_value
        ctrl = np.zeros(actions.shape[:2] + (self.lean.model.nu,))
        ctrl[..., tab.actuator_ids] = hands
        return ctrl

    def rollout(self, start: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Play (N, h, 39) from the state vector `start`: key qpos (N, h, 88), fingertips
        (N, h, 10, 3) when the reach term is on, and (N,) bool: the lane ran without warnings."""
        m, d, sub = self.lean.model, self.data, self.lean.n_substeps
        ctrl = self.controls(actions)
        n, h = actions.shape[:2]
        key_qpos = np.empty((n, h, len(self.adr)))
        tips = np.empty((n, h, 10, 3)) if self.config.reach_weight > 0 else None
        sites = self.lean.tables.fingertip_site_ids
        ok = np.ones(n, bool)
        for i in range(n):
            mujoco.mj_setState(m, d, start, STATE_SPEC)
            before = d.warning.number.copy()
            for j in range(h):
                d.ctrl[:] = ctrl[i, j]
                mujoco.mj_step(m, d, sub)
                key_qpos[i, j] = d.qpos[self.adr]
                if tips is not None:
                    tips[i, j] = d.site_xpos[sites]
            ok[i] = not (d.warning.number > before).any()
        return key_qpos, tips, ok

    def score(self, t: int, key_qpos: np.ndarray, tips: np.ndarray | None, ok: np.ndarray,
              right_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) total scores and (N, 2) per-hand scores of candidates played from step t."""
        cfg = self.config
        h = key_qpos.shape[1]
        goal = self.goal[t: t + h]  # (h, 88)
        clipped = np.clip(key_qpos, self.key_lo, self.key_hi)
        pressed = np.abs(clipped - self.key_hi) <= _KEY_THRESHOLD
        depth = clipped / self.key_hi  # 0 up .. 1 fully down
        _, _, f1 = per_step_prf(np.broadcast_to(goal, pressed.shape), pressed)
        n_goal = goal.sum(-1)
        goal_depth = (depth * goal).sum(-1) / np.maximum(n_goal, 1)
        wrong_depth = (depth * ~goal).sum(-1)
        total = cfg.f1_weight * f1 + cfg.depth_weight * goal_depth - cfg.wrong_weight * wrong_depth
        missing = goal & ~pressed
        if tips is not None:
            dist = np.linalg.norm(tips[:, :, :, None, :] - self.key_points[None, None, None], axis=-1).min(2)
            n_missing = missing.sum(-1)
            total = total - cfg.reach_weight * (dist * missing).sum(-1) / np.maximum(n_missing, 1)
        # Per hand: hits minus misses and wrong presses on its keys, plus its depth terms.
        hands = np.stack([right_keys, ~right_keys])  # (2, 88)
        per_hand = np.empty((len(ok), 2))
        scale = np.maximum(n_goal, 1)
        for k, mask in enumerate(hands):
            g = goal & mask
            hit = (pressed & g).sum(-1)
            miss = (missing & mask).sum(-1)
            wrong = (pressed & ~goal & mask).sum(-1)
            value = (hit - miss - wrong) / scale + cfg.depth_weight * (depth * g).sum(-1) / scale
            per_hand[:, k] = (value - cfg.wrong_weight * (depth * ~goal * mask).sum(-1)).sum(-1)
        total = np.where(ok, total.sum(-1), -np.inf)
        per_hand[~ok] = -np.inf
        return total, per_hand

    def right_hand_keys(self, fingertips: np.ndarray) -> np.ndarray:
        """(88,) bool: keys whose nearest fingertip (across the keyboard) is one of the right hand's."""
        dy = np.abs(self.key_points[:, None, 1] - fingertips[None, :, 1])  # (88, 10)
        return dy[:, :5].min(1) <= dy[:, 5:].min(1)


def _interpolation(h: int, n_knots: int) -> np.ndarray:
    """(h, n_knots) weights: linear interpolation between knots spread evenly over h steps."""
    if n_knots == 1:
        return np.ones((h, 1))
    positions = np.linspace(0.0, h - 1.0, n_knots)
    eye = np.eye(n_knots)
    return np.stack([np.interp(np.arange(h), positions, eye[k]) for k in range(n_knots)], axis=1)


def optimise_trajectory(
    chunk: "Chunk",
    env_config: EnvConfig | None,
    nominal_actions: np.ndarray,
    config: MPCConfig | None = None,
    seed: int | np.random.Generator = 0,
    *,
    checkpoint=None,
    checkpoint_every: int = 25,
    on_step: Callable[[int, int], None] | None = None,
    lean: LeanPiano | None = None,
    execution_offsets: np.ndarray | None = None,
    should_stop: Callable[[], bool] | None = None,
    alternatives: list[np.ndarray] | tuple = (),
) -> MPCResult:
    """Predictive sampling around `nominal_actions` (T, 39) over the whole chunk.

    `seed` (an int, deterministic) or a Generator draws the noise. With
    `checkpoint` (a file path), progress is written there atomically every
    `checkpoint_every` steps and a matching file is continued from; a generator
    `seed` cannot be resumed (its start state is unknown), so it needs no
    checkpoint. `on_step(step, n_steps)` is called after every executed step.
    `execution_offsets` (T, 39) are added to each chosen action before it is
    executed (the noise of a rollout; the plan itself is kept without them).
    When `should_stop()` turns true after a step, the progress is checkpointed at
    that step and `MPCStopped` is raised (a later call resumes from it).
    `alternatives`: other (T, 39) nominal trajectories of the chunk (the IK nominal's
    search candidates, other timings and fingerings); at every step the window of
    each, from step t, is scored beside the plan, and a better one is taken.
    """
    config = config or MPCConfig()
    env_config = env_config or EnvConfig()
    nominal = np.asarray(nominal_actions, dtype=np.float64)
    n_steps = chunk.n_steps
    if nominal.shape != (n_steps, ACTION_DIM):
        raise ValueError(f"optimise_trajectory({chunk.chunk_id}): nominal actions of shape {nominal.shape}, "
                         f"expected ({n_steps}, {ACTION_DIM})")
    if checkpoint_every < 1:
        raise ValueError(f"optimise_trajectory({chunk.chunk_id}): checkpoint_every must be >= 1, got {checkpoint_every}")
    if checkpoint is not None and isinstance(seed, np.random.Generator):
        raise ValueError(f"optimise_trajectory({chunk.chunk_id}): a checkpoint needs an integer seed, not a Generator")
    lean = lean or LeanPiano(chunk, env_config, n_lanes=1)
    if lean.n_steps != n_steps or lean.config != env_config:
        raise ValueError(f"optimise_trajectory({chunk.chunk_id}): the lean task given is of {lean.n_steps} steps "
                         f"and config {lean.config}, not {n_steps} and {env_config}")
    if execution_offsets is not None:
        execution_offsets = np.asarray(execution_offsets, dtype=np.float64)
        if execution_offsets.shape != nominal.shape:
            raise ValueError(f"optimise_trajectory({chunk.chunk_id}): execution offsets of shape "
                             f"{execution_offsets.shape}, expected {nominal.shape}")
    alternatives = [np.asarray(a, dtype=np.float64) for a in alternatives]
    for a in alternatives:
        if a.shape != nominal.shape:
            raise ValueError(f"optimise_trajectory({chunk.chunk_id}): an alternative nominal of shape {a.shape}, "
                             f"expected {nominal.shape}")
    planner = _Planner(lean, nominal, config)
    planner.offsets = execution_offsets
    planner.alternatives = np.stack(alternatives) if alternatives else None
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    key = progress_key(chunk, env_config, config, nominal, seed if isinstance(seed, int) else None,
                       execution_offsets, planner.alternatives)
    progress = load_progress(checkpoint, key, n_steps) if checkpoint is not None else None
    lean.reset([0])
    if progress is None:
        progress = MPCProgress.start(n_steps, nominal[: config.horizon], config.n_iterations)
        resumed_from = None
    else:
        lean.set_state(0, progress.lane_state())
        rng.bit_generator.state = progress.rng_state
        resumed_from = progress.t
        log.info("%s: MPC continues from step %d of %d", chunk.chunk_id, progress.t, n_steps)
    cpu_start = time.process_time()
    plan = progress.plan
    for t in range(progress.t, n_steps):
        plan = _control_step(planner, lean, progress, t, plan, rng)
        progress.t = t + 1
        progress.plan = plan
        stop = should_stop is not None and progress.t < n_steps and should_stop()
        if checkpoint is not None and (stop or progress.t % checkpoint_every == 0 or progress.t == n_steps):
            state = lean.get_state(0)
            save_progress(checkpoint, key, progress, state, rng.bit_generator.state,
                          cpu_seconds=progress.cpu_seconds_before + time.process_time() - cpu_start)
        if on_step is not None:
            on_step(progress.t, n_steps)
        if stop:
            raise MPCStopped(progress.t)
    cpu = progress.cpu_seconds_before + time.process_time() - cpu_start
    result = MPCResult(actions=progress.actions.copy(), precision=progress.precision.copy(),
                       recall=progress.recall.copy(), f1=progress.f1.copy(), plan_score=progress.plan_score.copy(),
                       best_score=progress.best_score.copy(), winner=progress.winner.copy(),
                       iteration_log=_iteration_log(progress), cpu_seconds=cpu, resumed_from=resumed_from)
    result.replay = replay_metrics(lean, result.actions)
    log.info("%s: MPC F1 %.3f (replay %.3f) in %.0f CPU-s", chunk.chunk_id, result.metrics["f1"],
             result.replay["f1"], cpu)
    return result


def _control_step(planner: _Planner, lean: LeanPiano, progress: MPCProgress, t: int, plan: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Choose and execute the action of step t; returns the plan for step t + 1."""
    cfg, nominal, n_steps = planner.config, planner.nominal, lean.n_steps
    h = min(cfg.horizon, n_steps - t)
    plan = plan[:h]
    start = lean.get_state(0).physics
    right = planner.right_hand_keys(lean.fingertip_positions([0])[0])
    weights = _interpolation(h, cfg.n_knots)
    replicas = None
    if cfg.robust_samples:  # common to all candidates of the step
        replicas = rng.standard_normal((cfg.robust_samples, h, ACTION_DIM)) * (cfg.robust_noise * planner.half)

    def evaluate(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) scores and (N, 2) per-hand scores of (N, h, 39) candidates (means over the replicas)."""
        plays = candidates
        if replicas is not None:
            noisy = np.clip(candidates[:, None] + replicas[None], planner.low, planner.high)
            plays = np.concatenate([candidates[:, None], noisy], axis=1).reshape(-1, h, ACTION_DIM)
        total, per_hand = planner.score(t, *planner.rollout(start, plays), right)
        k = 1 + (0 if replicas is None else len(replicas))
        return total.reshape(-1, k).mean(1), per_hand.reshape(-1, k, 2).mean(1)

    best = plan
    best_score = plan_score = float(evaluate(plan[None])[0][0])
    winner = 0
    if cfg.time_shifts:
        steps = np.clip(t + np.arange(h)[None, :] + np.asarray(cfg.time_shifts)[:, None], 0, n_steps - 1)
        shifted = nominal[steps]
        scores, _ = evaluate(shifted)
        if scores.max() > best_score:
            best, best_score, winner = shifted[int(np.argmax(scores))], float(scores.max()), 3
    if planner.alternatives is not None:
        windows = planner.alternatives[:, t: t + h]
        scores, _ = evaluate(windows)
        if scores.max() > best_score:
            best, best_score, winner = windows[int(np.argmax(scores))], float(scores.max()), 5
    if planner.reach is not None:
        lead = min(cfg.reach_lead, h - 1)
        offset = planner.reach.offset(lean.data(0), planner.goal[t + lead], lean.pressed_keys([0])[0], right)
        if offset is not None:
            scales = np.asarray(cfg.reach_scales)[:, None, None]
            reached = np.clip(best[None] + scales * offset[None, None], planner.low, planner.high)
            scores, _ = evaluate(reached)
            if scores.max() > best_score:
                best, best_score, winner = reached[int(np.argmax(scores))], float(scores.max()), 4
    for i in range(cfg.n_iterations):
        centre = best
        if cfg.n_samples == 0:
            break
        knots = rng.standard_normal((cfg.n_samples, cfg.n_knots, ACTION_DIM))
        noise = np.einsum("hk,nka->nha", weights, knots) * (cfg.noise * cfg.iteration_noise_decay ** i * planner.half)
        candidates = np.clip(centre[None] + noise, planner.low, planner.high)
        scores, per_hand = evaluate(candidates)
        round_best, round_winner = int(np.argmax(scores)), 1
        round_score = float(scores[round_best])
        candidate = candidates[round_best]
        if cfg.hand_split and cfg.n_samples > 1:
            r, l = int(np.argmax(per_hand[:, 0])), int(np.argmax(per_hand[:, 1]))
            if r != l:
                mixed = np.concatenate([noise[r, :, :HAND_ACTIONS], noise[l, :, HAND_ACTIONS:]], axis=-1)
                mixed = np.clip(centre + mixed, planner.low, planner.high)
                mixed_score = float(evaluate(mixed[None])[0][0])
                if mixed_score > round_score:
                    candidate, round_score, round_winner = mixed, mixed_score, 2
        gain = round_score - best_score
        progress.round_gain[t, i] = max(gain, 0.0)
        if gain > 0:
            best, best_score, winner = candidate, round_score, round_winner
    action = best[0]
    if planner.offsets is not None:
        action = np.clip(action + planner.offsets[t], planner.low, planner.high)
    step = lean.step(action[None], [0], observe=False)
    precision, recall, f1 = per_step_prf(step.goal_keys, step.pressed_keys)
    progress.record(t, action, float(precision[0]), float(recall[0]), float(f1[0]), plan_score, best_score, winner)
    nxt = best[1:]
    if t + h < n_steps:
        nxt = np.concatenate([nxt, nominal[t + h][None]])
    return nxt


def _iteration_log(progress: MPCProgress) -> list[dict]:
    gains = progress.round_gain
    return [{"round": i, "steps_improved": int((gains[:, i] > 0).sum()), "mean_gain": float(gains[:, i].mean())}
            for i in range(gains.shape[1])]


def replay_metrics(lean: LeanPiano, actions: np.ndarray) -> dict:
    """Precision/recall/F1 of `actions` (T, 39) played open loop from the episode start
    (in the lean task's lane 0, which is reset first)."""
    lean.reset([0])
    pressed = np.empty((len(actions), 88), bool)
    for t, action in enumerate(actions):
        pressed[t] = lean.step(action[None], [0], observe=False).pressed_keys[0]
    return key_press_metrics(lean.goal_keys()[: len(actions)], pressed).as_dict()
