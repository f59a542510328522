"""Why goal notes are missed: a per-note failure classifier computed from the simulation.

The classifier reads an `envs.piano.trace.EpisodeTrace`: what an episode did in the
physics (goal and pressed keys, fingertips, contacts), recorded by
`envs.piano.trace.record_episode` / `replay_actions`.

A goal note is one key's contiguous goal interval [on, off] (steps). It is
*missed* when the key is down for less than `FailureConfig.min_share` of the
interval's steps. Each missed note gets one cause, the first that applies:

1. ``beyond_reach_speed``: no ideal two-hand mover covers it (`reach_coverage`):
   each hand covers keys within half of `hand_span_m` of its fingertips' centre
   line, moves at most `max_hand_speed` (the IK's forearm speed limit,
   `IKConfig`), presses at most 5 keys, keeps its forearm `forearm_gap_m` from
   the other one (the forearms collide: the hands can neither cross nor come
   closer), starts where the hands start; the dynamic programme minimising
   uncovered key-steps still leaves the note covered less than `min_share`.
2. ``wrong_neighbour``: while the note was due and the key was up, a key within
   `neighbour_keys` of it that was not in the goal was down, and the fingertip
   nearest to the goal key lay over that neighbour.
3. ``jam``: for at least `jam_min_share` of the note's steps the hands touched
   each other, or a hand geom touched the side face (contact normal |n_z| <
   `envs.piano.trace.EDGE_NORMAL_Z`, as recorded) of the key or of a key next to it.
4. ``late``: the key went down during the interval, first later than
   `late_steps` after the onset.
5. ``never_reached``: no fingertip came over the key's footprint (x-y box of its
   geom) during the interval.
6. ``other``: reached but never pressed (``not_pressed``), or pressed on time
   but too briefly (``short``); `FailureReport.other_detail` splits them.

`FailureReport.flags` also counts every condition that holds per missed note,
whatever the cause chosen, so overlapping mechanisms stay visible; given a
plan (`planned_presses` of, e.g., a nominal trajectory's commanded targets
or IK fingertips), the flag ``not_<plan>`` counts the missed notes that plan
itself never pressed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from envs.piano.trace import FINGERS_PER_HAND, N_KEYS, EpisodeTrace, KeyLayout

CAUSES = ("beyond_reach_speed", "wrong_neighbour", "jam", "late", "never_reached", "other")
# Key-steps pressed outside the goal (what costs precision), by kind (`false_presses`).
FALSE_PRESSES = ("held_past_note", "early", "neighbour", "other", "not_by_fingertip")
# Largest y distance between two key centres one reduced Shadow hand presses at
# once (ours, measured with envs.control.ik.HandsIK: thumb and little finger reach keys
# 6 white keys apart (0.141 m) within 1.3 mm, an octave (0.164 m) misses by 6 mm).
HAND_SPAN_M = 0.15
# Closest the two forearm bodies come along the keyboard before their geoms
# touch (ours, measured by sliding the hands together: contact at 0.1495 m).
FOREARM_GAP_M = 0.15


@dataclass(frozen=True)
class FailureConfig:
    min_share: float = 0.5  # a note counts as played when its key is down for >= this share of its steps
    late_steps: int = 2  # a first press more than this many steps after the onset is late (0.1 s at 20 Hz)
    neighbour_keys: int = 2  # keys within this index distance are neighbours (next white key across a black)
    jam_min_share: float = 0.25  # share of a note's steps with hand-hand or side-face contacts for a jam
    false_press_window: int = 3  # steps: a false press this close after / before a goal interval of its key
    hand_span_m: float = HAND_SPAN_M
    forearm_gap_m: float = FOREARM_GAP_M
    max_hand_speed: float = 0.4  # m/s, envs.control.ik.IKConfig.max_speed_forearm (the plan's limit)
    grid_m: float = 0.01  # hand-centre grid of the reach/speed dynamic programme

    def __post_init__(self) -> None:
        for name in ("min_share", "jam_min_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"FailureConfig.{name}={getattr(self, name)}: must be in (0, 1]")
        for name in ("late_steps", "neighbour_keys", "false_press_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"FailureConfig.{name}={getattr(self, name)}: must be >= 0")
        if self.forearm_gap_m < 0:
            raise ValueError(f"FailureConfig.forearm_gap_m={self.forearm_gap_m}: must be >= 0")
        for name in ("hand_span_m", "max_hand_speed", "grid_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FailureConfig.{name}={getattr(self, name)}: must be > 0")


def goal_notes(goal: np.ndarray) -> list[tuple[int, int, int]]:
    """(key, on, off) of every contiguous goal interval, off inclusive, sorted by (on, key)."""
    goal = np.asarray(goal, dtype=bool)
    padded = np.vstack([np.zeros((1, goal.shape[1]), bool), goal, np.zeros((1, goal.shape[1]), bool)])
    diff = np.diff(padded.astype(np.int8), axis=0)
    notes = []
    for key in range(goal.shape[1]):
        starts = np.flatnonzero(diff[:, key] == 1)
        ends = np.flatnonzero(diff[:, key] == -1) - 1
        notes.extend((key, int(a), int(b)) for a, b in zip(starts, ends))
    return sorted(notes, key=lambda n: (n[1], n[0]))


def reach_coverage(goal: np.ndarray, layout: KeyLayout, control_timestep: float,
                   config: FailureConfig | None = None) -> np.ndarray:
    """(T, 88) bool: goal key-steps an ideal two-hand mover covers (module docstring, cause 1).

    State: the two forearm positions on a grid along the keyboard (y), at
    least `forearm_gap_m` apart (right above left); a hand's centre is its
    forearm plus the offset it has at rest. Each step a hand moves at most
    `max_hand_speed * control_timestep`; the cost of a step is its goal keys
    left without a finger (outside both spans, or beyond five per hand).
    Minimised over the episode by dynamic programming from the hands' start,
    then the optimal path is read back. An optimistic bound: any finger, the
    thumb included, reaches any key within its hand's span.
    """
    config = config or FailureConfig()
    goal = np.asarray(goal, dtype=bool)
    key_y = layout.centers[:, 1]
    half = 0.5 * config.hand_span_m
    offset = layout.centre_offsets  # hand centre = forearm + offset
    lo, hi = key_y.min() - half - np.abs(offset).max(), key_y.max() + half + np.abs(offset).max()
    grid = np.arange(lo, hi + 1e-9, config.grid_m)  # forearm positions of either hand
    n = len(grid)
    radius = max(1, int(np.floor(config.max_hand_speed * control_timestep / config.grid_m + 1e-9)))
    shifts = [(da, db) for da in range(-radius, radius + 1) for db in range(-radius, radius + 1)]
    # state (a, b): right forearm at grid[a], left at grid[b]; the forearms stay apart
    feasible = grid[:, None] - grid[None, :] >= config.forearm_gap_m - 1e-9
    start = [int(np.argmin(np.abs(grid - y))) for y in layout.start_forearms]
    if not feasible[start[0], start[1]]:
        raise ValueError(f"reach_coverage: the hands start closer than forearm_gap_m={config.forearm_gap_m}")
    value = np.full((n, n), np.inf)
    value[start[0], start[1]] = 0.0
    choice = np.zeros((len(goal), n, n), dtype=np.int8)  # index into `shifts` of the best previous state
    stack = np.empty((len(shifts), n, n))
    for t in range(len(goal)):
        stack.fill(np.inf)
        for s, (da, db) in enumerate(shifts):  # stack[s, a, b] = value[a + da, b + db]
            stack[s, max(0, -da):n - max(0, da), max(0, -db):n - max(0, db)] = \
                value[max(0, da):n - max(0, -da), max(0, db):n - max(0, -db)]
        choice[t] = np.argmin(stack, axis=0)
        keys = np.flatnonzero(goal[t])
        value = np.min(stack, axis=0) + _uncovered(keys, key_y, grid + offset[0], grid + offset[1], half)
        value[~feasible] = np.inf
    a, b = divmod(int(np.argmin(value)), n)
    covered = np.zeros_like(goal)
    for t in range(len(goal) - 1, -1, -1):
        covered[t] = _covered_keys(np.flatnonzero(goal[t]), key_y, grid[a] + offset[0], grid[b] + offset[1], half)
        da, db = shifts[int(choice[t, a, b])]
        a, b = a + da, b + db
    return covered


def _uncovered(keys: np.ndarray, key_y: np.ndarray, right: np.ndarray, left: np.ndarray,
               half: float) -> np.ndarray:
    """(n, n) goal keys without a finger for hand centres (right[a], left[b])."""
    n = len(right)
    if len(keys) == 0:
        return np.zeros((n, n))
    in_r = (np.abs(key_y[keys][:, None] - right[None, :]) <= half + 1e-9).astype(np.int64)  # (K, n)
    in_l = (np.abs(key_y[keys][:, None] - left[None, :]) <= half + 1e-9).astype(np.int64)
    both = in_r.T @ in_l  # (a, b): keys within both spans
    only_r = in_r.sum(0)[:, None] - both
    only_l = in_l.sum(0)[None, :] - both
    r, l_ = np.minimum(only_r, FINGERS_PER_HAND), np.minimum(only_l, FINGERS_PER_HAND)
    shared = np.minimum(both, 2 * FINGERS_PER_HAND - r - l_)
    return (len(keys) - r - l_ - shared).astype(np.float64)


def _covered_keys(keys: np.ndarray, key_y: np.ndarray, right: float, left: float, half: float) -> np.ndarray:
    """(88,) bool: the goal keys given a finger with the hands at these centres (five per hand)."""
    in_r = [int(k) for k in keys if abs(key_y[k] - right) <= half + 1e-9]
    in_l = [int(k) for k in keys if abs(key_y[k] - left) <= half + 1e-9]
    only_r = [k for k in in_r if k not in in_l][:FINGERS_PER_HAND]
    only_l = [k for k in in_l if k not in in_r][:FINGERS_PER_HAND]
    room = 2 * FINGERS_PER_HAND - len(only_r) - len(only_l)
    shared = [k for k in in_r if k in in_l][:room]
    out = np.zeros(N_KEYS, dtype=bool)
    out[only_r + only_l + shared] = True
    return out


@dataclass
class FailureReport:
    n_notes: int
    n_missed: int
    causes: dict[str, int]
    other_detail: dict[str, int]
    flags: dict[str, int]
    false_presses: dict[str, int]  # key-steps pressed outside the goal, by kind (`false_presses`)
    missed: list[dict] = field(default_factory=list)  # {key, on, off, share, cause}

    def as_dict(self) -> dict:
        return asdict(self)


def planned_presses(fingertips: np.ndarray, layout: KeyLayout, depth: float = 0.005) -> np.ndarray:
    """(T, 88) bool: keys a planned fingertip trajectory (T, 10, 3) presses: a
    fingertip over the key's footprint and more than `depth` below its top."""
    tips = np.asarray(fingertips, dtype=np.float64)
    top = layout.centers[:, 2] + layout.half_sizes[:, 2]
    out = np.zeros((len(tips), N_KEYS), dtype=bool)
    for key in range(N_KEYS):
        out[:, key] = (layout.over_key(tips, key) & (tips[..., 2] < top[key] - depth)).any(axis=1)
    return out


def classify_missed_notes(trace: EpisodeTrace, control_timestep: float = 0.05,
                          config: FailureConfig | None = None, layout: KeyLayout | None = None,
                          plans: dict | None = None, plan_lead_steps: int = 4) -> FailureReport:
    """Classify every missed goal note of `trace` (module docstring).

    `plans` maps a name to a (T, 88) bool array of the keys a plan pressed at
    each step (`planned_presses`); a missed note a plan never pressed from
    `plan_lead_steps` before its onset to its end is flagged ``not_<name>``.
    """
    config = config or FailureConfig()
    layout = layout or trace.layout
    if layout is None:
        raise ValueError("classify_missed_notes: the trace has no KeyLayout; pass one")
    goal, pressed = np.asarray(trace.goal, bool), np.asarray(trace.pressed, bool)
    notes = goal_notes(goal)
    coverage = reach_coverage(goal, layout, control_timestep, config)
    causes = dict.fromkeys(CAUSES, 0)
    other = {"not_pressed": 0, "short": 0}
    flags = dict.fromkeys(CAUSES[:-1], 0)
    plans = {name: np.asarray(mask, dtype=bool) for name, mask in (plans or {}).items()}
    for name, mask in plans.items():
        if mask.shape != goal.shape:
            raise ValueError(f"classify_missed_notes: plan {name!r} has shape {mask.shape}, the goal {goal.shape}")
        flags[f"not_{name}"] = 0
    missed = []
    for key, on, off in notes:
        span = slice(on, off + 1)
        down = pressed[span, key]
        share = float(down.mean())
        if share >= config.min_share:
            continue
        found = {
            "beyond_reach_speed": coverage[span, key].mean() < config.min_share,
            "jam": _jammed(trace, key, span, config),
            "wrong_neighbour": _wrong_neighbour(trace, layout, key, span, config),
            "late": bool(down.any()) and int(np.argmax(down)) > config.late_steps,
            "never_reached": not layout.over_key(trace.fingertips[span], key).any(),
        }
        for name, hit in found.items():
            flags[name] += int(hit)
        for name, mask in plans.items():
            flags[f"not_{name}"] += int(not mask[max(0, on - plan_lead_steps):off + 1, key].any())
        cause = next((name for name in CAUSES[:-1] if found[name]), "other")
        if cause == "other":
            other["short" if down.any() else "not_pressed"] += 1
        causes[cause] += 1
        missed.append({"key": key, "on": on, "off": off, "share": round(share, 3), "cause": cause})
    return FailureReport(n_notes=len(notes), n_missed=len(missed), causes=causes, other_detail=other,
                         flags=flags, missed=missed,
                         false_presses=false_presses(goal, pressed, config, trace.fingertips, layout))


def _jammed(trace: EpisodeTrace, key: int, span: slice, config: FailureConfig) -> bool:
    near = slice(max(0, key - 1), min(N_KEYS, key + 2))
    contact = trace.hand_hand[span] | trace.edge_contact[span, near].any(axis=1)
    return bool(contact.mean() >= config.jam_min_share)


def false_presses(goal: np.ndarray, pressed: np.ndarray, config: FailureConfig | None = None,
                  fingertips: np.ndarray | None = None, layout: KeyLayout | None = None) -> dict[str, int]:
    """Key-steps pressed while not in the goal (precision losses), by kind: the key's goal
    interval ended at most `false_press_window` steps earlier (held past the note), or starts
    at most that many steps later (early), or a goal key within `neighbour_keys` is due
    (neighbour), or none of these (other). With fingertips and a layout, also how many of them
    had no fingertip over the key (pressed by another part of the hand: ``not_by_fingertip``)."""
    config = config or FailureConfig()
    goal, pressed = np.asarray(goal, bool), np.asarray(pressed, bool)
    w = config.false_press_window
    n = len(goal)
    recent = np.zeros_like(goal)  # goal at any of the w steps before
    coming = np.zeros_like(goal)  # goal at any of the w steps after
    for d in range(1, w + 1):
        recent[d:] |= goal[:n - d]
        coming[:n - d] |= goal[d:]
    near = np.zeros_like(goal)
    for d in range(1, config.neighbour_keys + 1):
        near[:, d:] |= goal[:, :-d]
        near[:, :-d] |= goal[:, d:]
    false = pressed & ~goal
    held = false & recent
    early = false & ~held & coming
    neighbour = false & ~held & ~early & near
    out = {"held_past_note": int(held.sum()), "early": int(early.sum()), "neighbour": int(neighbour.sum()),
           "other": int((false & ~held & ~early & ~neighbour).sum())}
    if fingertips is not None and layout is not None:
        steps, keys = np.nonzero(false)
        tips = np.asarray(fingertips)[steps]  # (F, 10, 3)
        d = np.abs(tips[..., :2] - layout.centers[keys][:, None, :2])
        over = np.all(d <= layout.half_sizes[keys][:, None, :2], axis=-1).any(axis=1)
        out["not_by_fingertip"] = int((~over).sum())
    return out


def _wrong_neighbour(trace: EpisodeTrace, layout: KeyLayout, key: int, span: slice, config: FailureConfig) -> bool:
    lo, hi = max(0, key - config.neighbour_keys), min(N_KEYS, key + config.neighbour_keys + 1)
    for t in range(span.start, span.stop):
        if trace.pressed[t, key]:
            continue
        wrong = [j for j in range(lo, hi) if j != key and trace.pressed[t, j] and not trace.goal[t, j]]
        if not wrong:
            continue
        tips = trace.fingertips[t]
        nearest = tips[np.argmin(np.linalg.norm(tips[:, :2] - layout.centers[key, :2], axis=1))]
        if any(layout.over_key(nearest, j) for j in wrong):
            return True
    return False


def sum_reports(reports: list[FailureReport]) -> dict:
    """Totals over several reports (e.g. the rollouts of a chunk), without the per-note lists."""
    out = {"n_notes": 0, "n_missed": 0, "causes": dict.fromkeys(CAUSES, 0),
           "other_detail": {"not_pressed": 0, "short": 0}, "flags": dict.fromkeys(CAUSES[:-1], 0),
           "false_presses": dict.fromkeys(FALSE_PRESSES, 0)}
    for report in reports:
        for name in report.flags:
            out["flags"].setdefault(name, 0)
        for name in report.false_presses:
            out["false_presses"].setdefault(name, 0)
        out["n_notes"] += report.n_notes
        out["n_missed"] += report.n_missed
        for group in ("causes", "other_detail", "flags", "false_presses"):
            for name, value in getattr(report, group).items():
                out[group][name] += value
    return out
