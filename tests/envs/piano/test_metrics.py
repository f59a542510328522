"""Key-press metrics: hand-computed values and equality with robopianist's wrapper."""

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from envs.piano.metrics import key_press_metrics, per_step_prf


def _row(*keys):
    row = np.zeros(88, dtype=bool)
    row[list(keys)] = True
    return row


def test_hand_computed_steps():
    goal = np.stack([_row(1, 2), _row(), _row(5), _row(), _row(7, 8)])
    pressed = np.stack([_row(1, 3), _row(), _row(), _row(9), _row(7, 8)])
    p, r, f = per_step_prf(goal, pressed)
    # step 0: tp=1 fp=1 fn=1; step 1: nothing (all 1 by zero_division);
    # step 2: missed key (p=1 by zero_division, r=0, f=0); step 3: wrong press (p=0, r=1, f=0).
    np.testing.assert_allclose(p, [0.5, 1, 1, 0, 1])
    np.testing.assert_allclose(r, [0.5, 1, 0, 1, 1])
    np.testing.assert_allclose(f, [0.5, 1, 0, 0, 1])
    m = key_press_metrics(goal, pressed)
    assert m.precision == pytest.approx(3.5 / 5)
    assert m.f1 == pytest.approx(2.5 / 5)


def test_matches_sklearn_on_random_steps():
    rng = np.random.default_rng(0)
    goal = rng.random((200, 88)) < 0.03
    pressed = rng.random((200, 88)) < 0.03
    goal[:20] = False
    pressed[10:30] = False
    p, r, f = per_step_prf(goal, pressed)
    for t in range(200):
        ref = precision_recall_fscore_support(goal[t], pressed[t], average="binary", zero_division=1)
        assert (p[t], r[t], f[t]) == pytest.approx(ref[:3]), t


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="goal shape"):
        per_step_prf(np.zeros((3, 88)), np.zeros((4, 88)))
