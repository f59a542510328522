"""Key-press precision, recall and F1 (RP1M section 3; robopianist's
`MidiEvaluationWrapper`).

Per control step, the pressed keys (piano activation) are compared to the keys
that should be down as a binary classification over the 88 keys, with
sklearn's `precision_recall_fscore_support(average="binary", zero_division=1)`
semantics: an empty denominator counts as 1. The episode figure is the mean
over steps. Vectorised here so that datasets can recompute it from stored
arrays; `tests/envs/test_metrics.py` checks it against robopianist's wrapper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class KeyPressMetrics:
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def per_step_prf(goal: np.ndarray, pressed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step precision, recall, F1 for (T, 88) binary arrays."""
    goal = np.asarray(goal).astype(bool)
    pressed = np.asarray(pressed).astype(bool)
    if goal.shape != pressed.shape:
        raise ValueError(f"goal shape {goal.shape} != pressed shape {pressed.shape}")
    tp = (goal & pressed).sum(-1).astype(np.float64)
    fp = (~goal & pressed).sum(-1).astype(np.float64)
    fn = (goal & ~pressed).sum(-1).astype(np.float64)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.maximum(den, 1.0), 1.0)  # zero_division=1

    return ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)


def key_press_metrics(goal: np.ndarray, pressed: np.ndarray) -> KeyPressMetrics:
    """Episode metrics: per-step precision/recall/F1 averaged over the steps."""
    precision, recall, f1 = per_step_prf(goal, pressed)
    if precision.size == 0:
        raise ValueError("key_press_metrics: the episode has no steps")
    return KeyPressMetrics(float(precision.mean()), float(recall.mean()), float(f1.mean()))
