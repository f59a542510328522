"""The RP1M piano task: robopianist's two-Shadow-hand task with OT fingering.

`PianoTask` subclasses robopianist's `PianoWithShadowHands` (its models,
physics, key-press, sustain and energy terms are reused as they are) and adds:

- the OT fingering reward of RP1M Eq. 1-2 (`envs.piano.ot`), or robopianist's
  human-fingering reward, or none (`RewardConfig.fingering`);
- the total reward of RP1M Eq. 3 as a named sum of terms, each kept per step
  in `step_info` (weighted, so the terms add up to the reward);
- the RP1M observation (Table 3) with the goal split into piano and sustain
  parts, and fingertip positions enabled;
- a fixed episode length (the chunk's `n_steps`): the note trajectory also
  holds the lookahead context after the chunk, which the goal observation shows
  but the episode does not play;
- the four-finger embodiment (little fingers curled and out of the OT matching).

Finger order everywhere (OT assignment, fingertip positions, hand state):
right hand first, then left; thumb, first, middle, ring, little within a hand
(robopianist's fingering convention: fingers 0-4 right, 5-9 left).
"""

from __future__ import annotations

import numpy as np
from dm_control.composer.observation import observable
from mujoco_utils import collision_utils
from robopianist.music import midi_file
from robopianist.suite.tasks.piano_with_shadow_hands import PianoWithShadowHands

from envs.piano.config import EnvConfig
from envs.piano.ot import OTResult, ot_assign, ot_reward
from envs.piano.spec import FINGERS_PER_HAND, LITTLE_FINGER, N_KEYS

# Little-finger actuators of robopianist's reduced Shadow hand and the targets
# that curl the finger into the palm (joint upper limits: LFJ3 90 deg, LFJ0 =
# J1+J2 coupled 180 deg), used for the four-finger embodiment.
_LITTLE_FINGER_CURL = {"A_LFJ4": 0.0, "A_LFJ3": 1.5708, "A_LFJ0": 3.1415}
# Press point on a key: robopianist's fingering reward aims at the key top,
# 35% of the half-length towards the player from the key centre.
_PRESS_POINT_X_FRACTION = 0.35


class PianoTask(PianoWithShadowHands):
    def __init__(self, midi: midi_file.MidiFile, n_steps: int, config: EnvConfig, *, title: str = "") -> None:
        self._config = config
        self._episode_steps = int(n_steps)
        self._title = title
        if self._episode_steps <= 0:
            raise ValueError(f"PianoTask({title!r}): n_steps must be positive, got {n_steps}")
        fingering = config.reward.fingering
        if fingering == "human" and not midi.has_fingering():
            raise ValueError(
                f"{title or 'song'}: fingering='human' needs fingering labels, and this song has none; "
                "use fingering='ot'"
            )
        super().__init__(
            midi=midi,
            n_steps_lookahead=config.lookahead_steps,
            trim_silence=False,  # chunks are already trimmed (envs.music.chunks)
            disable_fingering_reward=fingering != "human",
            disable_forearm_reward=False,
            disable_colorization=True,
            energy_penalty_coef=config.reward.energy_coef,
            gravity_compensation=config.gravity_compensation,
            reduced_action_space=config.reduced_action_space,
            primitive_fingertip_collisions=config.primitive_fingertip_collisions,
            change_color_on_activation=config.change_color_on_activation,
            physics_timestep=config.physics_timestep,
            control_timestep=config.control_timestep,
        )
        self._ids_ready = False
        self._last_ot: OTResult | None = None
        self.step_info: dict = {}

    # --- trajectory and termination --------------------------------------------------

    def _reset_trajectory(self) -> None:
        super()._reset_trajectory()
        # The chunk's note trajectory covers the episode plus its lookahead context.
        # `_notes` keeps the episode steps only (so robopianist's termination and its
        # `MidiEvaluationWrapper` see exactly the episode); the full trajectory, padded
        # with silence, feeds the goal observation.
        needed = self._episode_steps + self._n_steps_lookahead
        notes, sustains = list(self._notes), list(self._sustains)
        pad = max(0, needed - len(notes))
        self._goal_notes = notes + [[] for _ in range(pad)]
        self._goal_sustains = sustains + [0] * pad
        self._notes = self._goal_notes[: self._episode_steps]
        self._sustains = self._goal_sustains[: self._episode_steps]

    def _update_goal_state(self) -> None:
        # As robopianist's, but reading the lookahead from the full trajectory.
        if self._t_idx == len(self._notes):
            return
        self._goal_state = np.zeros((self._n_steps_lookahead + 1, self.piano.n_keys + 1), dtype=np.float64)
        t_end = min(self._t_idx + self._n_steps_lookahead + 1, len(self._goal_notes))
        for i, t in enumerate(range(self._t_idx, t_end)):
            self._goal_state[i, [note.key for note in self._goal_notes[t]]] = 1.0
            self._goal_state[i, -1] = self._goal_sustains[t]

    @property
    def episode_steps(self) -> int:
        return self._episode_steps

    @property
    def notes(self) -> list:
        """Per-step lists of notes to play (robopianist `PianoNote`s), episode steps only."""
        return self._notes

    def goal_keys(self) -> np.ndarray:
        """(n_steps, 88) bool: the keys that should be down at each episode step."""
        goal = np.zeros((self._episode_steps, N_KEYS), dtype=bool)
        for t, notes in enumerate(self.notes):
            goal[t, [n.key for n in notes]] = True
        return goal

    # --- actions ----------------------------------------------------------------------

    def before_step(self, physics, action, random_state) -> None:
        if self._config.four_fingers:
            action = self._curl_little_fingers(physics, np.array(action, dtype=np.float64))
        super().before_step(physics, action, random_state)

    def _curl_little_fingers(self, physics, action: np.ndarray) -> np.ndarray:
        offset = 0
        for hand in (self.right_hand, self.left_hand):
            names = [a.name for a in hand.actuators]
            for name, target in _LITTLE_FINGER_CURL.items():
                full = f"{hand.name[:2]}_{name}" if not name.startswith("forearm") else name
                if full in names:
                    action[offset + names.index(full)] = target
            offset += len(names)
        return action

    # --- observations -----------------------------------------------------------------

    def _add_observables(self) -> None:
        super()._add_observables()
        for hand in (self.right_hand, self.left_hand):
            hand.observables.fingertip_positions.enabled = True
        n_keys = self.piano.n_keys

        def piano_goal(physics) -> np.ndarray:
            del physics
            self._update_goal_state()
            return self._goal_state[:, :n_keys].ravel()

        def sustain_goal(physics) -> np.ndarray:
            del physics
            self._update_goal_state()
            return self._goal_state[:, n_keys].copy()

        # Replace robopianist's single "goal" (L x 89) by the two parts of RP1M Table 3.
        self._task_observables = {
            "piano_goal": observable.Generic(piano_goal),
            "sustain_goal": observable.Generic(sustain_goal),
            "fingering": self._task_observables["fingering"],
        }
        self._task_observables["piano_goal"].enabled = True
        self._task_observables["sustain_goal"].enabled = True

    # --- rewards ----------------------------------------------------------------------

    def _set_rewards(self) -> None:
        super()._set_rewards()
        reward_fn = self._reward_fn
        # Eq. 3 order and names; robopianist's forearm term returns 0.5 when there is
        # no collision, i.e. already a1 * (1 - 1_collision) with a1 = 0.5.
        for name in list(reward_fn.reward_fns):
            reward_fn.remove(name)
        if self._config.reward.fingering == "ot":
            reward_fn.add("ot", self._compute_ot_reward)
        elif self._config.reward.fingering == "human":
            reward_fn.add("fingering", self._compute_fingering_reward)
        reward_fn.add("press", self._compute_key_press_reward)
        reward_fn.add("sustain", self._compute_sustain_reward)
        reward_fn.add("collision", self._compute_collision_reward)
        reward_fn.add("energy", self._compute_energy_reward)

    def _compute_collision_reward(self, physics) -> float:
        collided = collision_utils.has_collision(
            physics,
            [g.full_identifier for g in self.right_hand.root_body.geom],
            [g.full_identifier for g in self.left_hand.root_body.geom],
        )
        return self._config.reward.collision_coef * (0.0 if collided else 1.0)

    def _prepare_ids(self, physics) -> None:
        """Model indices for fast, vectorised fingertip and key lookups."""
        if self._ids_ready:
            return
        sites = [s for hand in (self.right_hand, self.left_hand) for s in hand.fingertip_sites]
        self._fingertip_site_ids = np.array([physics.model.name2id(s.full_identifier, "site") for s in sites])
        key_geoms = [key.geom[0] for key in self.piano.keys]
        self._key_geom_ids = np.array([physics.model.name2id(g.full_identifier, "geom") for g in key_geoms])
        size = physics.model.geom_size[self._key_geom_ids]
        self._key_press_offset = np.stack(
            [_PRESS_POINT_X_FRACTION * size[:, 0], np.zeros(len(size)), 0.5 * size[:, 2]], axis=-1
        )
        fingers = np.arange(2 * FINGERS_PER_HAND)
        if self._config.four_fingers:
            fingers = fingers[fingers % FINGERS_PER_HAND != LITTLE_FINGER]
        self._ot_fingers = fingers
        self._ids_ready = True

    def fingertip_positions(self, physics) -> np.ndarray:
        self._prepare_ids(physics)
        return physics.data.site_xpos[self._fingertip_site_ids].copy()

    def key_press_points(self, physics, keys: np.ndarray) -> np.ndarray:
        self._prepare_ids(physics)
        return physics.data.geom_xpos[self._key_geom_ids[keys]] + self._key_press_offset[keys]

    def _compute_ot_reward(self, physics) -> float:
        keys = np.flatnonzero(self._goal_current[:-1])
        fingertips = self.fingertip_positions(physics)[self._ot_fingers]
        result = ot_assign(fingertips, self.key_press_points(physics, keys), keys)
        self._last_ot = result
        return ot_reward(result, self._config.reward.ot_reduction)

    def ot_assignment(self) -> np.ndarray:
        """(10,) int8: the key each fingertip is assigned at the last step, -1 when idle."""
        assigned = np.full(2 * FINGERS_PER_HAND, -1, dtype=np.int8)
        if self._last_ot is not None:
            assigned[self._ot_fingers] = self._last_ot.key_for_finger
        return assigned

    def get_reward(self, physics) -> float:
        self._last_ot = None
        # The OT assignment exists (and is stored in datasets) in "ot" mode only;
        # other modes record every finger as idle (-1).
        reward = super().get_reward(physics)
        self.step_info = {
            "reward_terms": dict(self._reward_fn.reward_terms),
            "ot_key_for_finger": self.ot_assignment(),
            "pressed_keys": self.piano.activation.copy(),
            "sustain_pressed": bool(self.piano.sustain_activation[0]),
            "goal_keys": self._goal_current[:-1].astype(bool),
        }
        return reward
