"""HandsIK on the real RP1M env: reaching, limits, frozen piano, actuator mapping."""

from dataclasses import replace

import mujoco
import numpy as np
import pytest

from envs.control.ik import HandsIK, IKConfig
from envs.music.chunks import make_chunks
from envs.music.songs import load_song
from envs.piano.config import EnvConfig
from envs.piano.env import make_env


@pytest.fixture(scope="module")
def env():
    chunk = replace(make_chunks(load_song("robopianist:CMajorScaleTwoHands"))[0], n_steps=30)
    env = make_env(chunk, EnvConfig(), seed=0)
    env.reset()
    yield env
    env.close()


def reachable_targets(ik: HandsIK, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Fingertip positions of a random nearby hand configuration (so they are reachable):
    fingers curled 0.02-0.08 rad per joint (J1 = J2 as the tendon moves them), small
    abduction, thumb and wrist moves, forearm slides of a few mm; hands well above the keys."""
    q = ik.q
    for jid, qadr in zip(ik.joint_ids, ik.hand_qpos):
        name = ik.model.joint(int(jid)).name.rsplit("/", 1)[-1]
        lo, hi = ik.model.jnt_range[jid]
        if "forearm" in name:
            delta = rng.uniform(0.0, 0.005)
        elif name[-2:] in ("J3", "J2", "J1") and "TH" not in name:
            delta = rng.uniform(0.02, 0.08)
        else:
            delta = rng.uniform(-0.04, 0.04)
        q[qadr] = np.clip(q[qadr] + delta, lo, hi)
    for row in np.flatnonzero(ik.actuation.sum(axis=1) == 2.0):  # tendon actuators: J1 := J2
        j2, j1 = np.flatnonzero(ik.actuation[row])
        q[j1] = q[j2]
    data = mujoco.MjData(ik.model)
    data.qpos[:] = q
    mujoco.mj_kinematics(ik.model, data)
    return data.site_xpos[ik.site_ids].copy(), q


def test_ik_reaches_nearby_targets_and_the_env_follows(env):
    env.reset()
    ik = HandsIK(env.physics, env.task)
    start = ik.fingertip_positions()
    np.testing.assert_allclose(start, env.task.fingertip_positions(env.physics))
    targets, _ = reachable_targets(ik, np.random.default_rng(0))
    moved = np.linalg.norm(targets - start, axis=1)
    assert moved.min() > 0.005 and moved.max() < 0.04, moved  # a real but local move (0.5-4 cm)
    for _ in range(3):
        ik.solve(targets)
    ik_error = np.linalg.norm(ik.fingertip_positions() - targets, axis=1)
    assert ik_error.max() < 0.002, ik_error  # 2 mm: the IK itself converges
    action = ik.action()
    for _ in range(10):  # 0.5 s: the servos settle (forearm time constant 0.11 s)
        env.step(action)
    sim_error = np.linalg.norm(env.task.fingertip_positions(env.physics) - targets, axis=1)
    # Servo tracking in free space (no key contact): measured <= 1.4 mm on this case
    # (IK alone 0.7 mm): J1 = J2 in the IK is how the simulator splits the tendon.
    assert sim_error.max() < 0.004, sim_error


def test_joint_limits_respected_on_unreachable_targets(env):
    env.reset()
    ik = HandsIK(env.physics, env.task)
    far = ik.fingertip_positions() + np.array([0.3, 0.0, -0.5])  # through the table, towards the player
    for _ in range(5):
        q_hand = ik.solve(far)
    ranges = ik.model.jnt_range[ik.joint_ids]
    assert np.all(q_hand >= ranges[:, 0] - 1e-6) and np.all(q_hand <= ranges[:, 1] + 1e-6)
    assert np.any(np.isclose(q_hand, ranges[:, 0], atol=0.05) | np.isclose(q_hand, ranges[:, 1], atol=0.05))
    action = ik.action(sustain=2.0)
    spec = env.action_spec()
    assert np.all(action >= spec.minimum) and np.all(action <= spec.maximum)
    assert action[-1] == 1.0


def test_piano_keys_frozen_and_env_state_untouched(env):
    env.reset()
    qpos_before = env.physics.data.qpos.copy()
    ik = HandsIK(env.physics, env.task)
    key_targets = env.task.key_press_points(env.physics, np.arange(88))
    targets = ik.fingertip_positions()
    targets[:, 2] = key_targets[0, 2] - 0.05  # push every fingertip into the keys
    ik.solve(targets)
    q = ik.q
    others = np.setdiff1d(np.arange(ik.model.nq), ik.hand_qpos)
    assert len(others) == 88  # exactly the piano's key joints
    np.testing.assert_array_equal(q[others], qpos_before[others])
    assert np.abs(q[ik.hand_qpos] - qpos_before[ik.hand_qpos]).max() > 0.05  # the hands did move
    np.testing.assert_array_equal(env.physics.data.qpos, qpos_before)  # the env's own data is not written


def test_actuator_mapping_and_coupled_finger_joints(env):
    env.reset()
    ik = HandsIK(env.physics, env.task)
    targets, _ = reachable_targets(ik, np.random.default_rng(1))
    ik.solve(targets)
    q = ik.q
    names = [ik.model.actuator(int(a)).name for a in ik.actuator_ids]
    ctrl = ik.qpos_to_ctrl(q)
    n_tendon = 0
    for name, value, aid in zip(names, ctrl, ik.actuator_ids):
        if name.endswith("J0"):  # tendon actuator on J1 + J2 (index, middle, ring, little)
            prefix = name.split("/")[-1].replace("A_", "")[:-1]  # e.g. rh_FFJ
            j1 = q[ik.model.joint(name.split("/")[0] + "/" + prefix + "1").qposadr[0]]
            j2 = q[ik.model.joint(name.split("/")[0] + "/" + prefix + "2").qposadr[0]]
            assert j1 == pytest.approx(j2, abs=1e-6)  # IK couples them as the simulator moves them
            assert value == pytest.approx(np.clip(j1 + j2, *ik.model.actuator_ctrlrange[aid]))
            n_tendon += 1
        else:
            joint = ik.model.actuator_trnid[aid, 0]
            assert value == pytest.approx(np.clip(q[ik.model.jnt_qposadr[joint]], *ik.model.actuator_ctrlrange[aid]))
    assert n_tendon == 8
    assert len(ctrl) == 38 and ik.action().shape == (39,)


def test_ik_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="iterations=0"):
        IKConfig(iterations=0)
    with pytest.raises(ValueError, match="gain=1.5"):
        IKConfig(gain=1.5)
    with pytest.raises(ValueError, match="max_speed_forearm"):
        IKConfig(max_speed_forearm=0.0)


def _forearm_gap(ik: HandsIK, env) -> float:
    data = ik.configuration.data
    ids = [mujoco.mj_name2id(ik.model, mujoco.mjtObj.mjOBJ_BODY, next(
        b for b in hand.mjcf_model.find_all("body") if b.name and b.name.endswith("forearm")).full_identifier)
        for hand in (env.task.right_hand, env.task.left_hand)]
    return float(data.xpos[ids[0], 1] - data.xpos[ids[1], 1])


def _bring_the_hands_together(ik: HandsIK) -> None:
    """Solve 2 s of control steps towards both hands on neighbouring keys: the right hand centred
    3 cm right of the middle of their start, the left 3 cm left of it."""
    start = ik.fingertip_positions()
    middle = start[:, 1].mean()
    targets = start.copy()
    targets[:5, 1] += middle + 0.03 - start[:5, 1].mean()
    targets[5:, 1] += middle - 0.03 - start[5:, 1].mean()
    for _ in range(40):  # the hands travel the whole way
        ik.solve(targets)


def test_forearm_gap_keeps_the_hands_apart_when_their_targets_meet(env):
    """Both hands asked onto neighbouring keys: without the limit the forearms come closer
    than their geoms allow (they would collide); with it they keep the gap."""
    env.reset()
    gaps = {}
    for gap in (0.0, 0.155):
        ik = HandsIK(env.physics, env.task, IKConfig(forearm_gap=gap, thumb_clearance=0.0))
        _bring_the_hands_together(ik)
        gaps[gap] = _forearm_gap(ik, env)
    assert gaps[0.0] < 0.12 and gaps[0.155] >= 0.155 - 0.002, gaps
    with pytest.raises(ValueError, match="forearm_gap=-0.1"):
        IKConfig(forearm_gap=-0.1)


def _thumb_distance(ik: HandsIK, env) -> float:
    """Least distance between the two hands' thumb geoms at the IK's configuration."""
    physics, model, data = env.physics, ik.model, ik.configuration.data
    ids = []
    for hand in (env.task.right_hand, env.task.left_hand):
        geoms = [g for g in hand.mjcf_model.find_all("geom") if (g.parent.name or "").endswith(("thmiddle", "thdistal"))]
        ids.append([int(i) for i in physics.bind(geoms).element_id if model.geom_contype[i]])
    fromto = np.zeros(6)
    return min(mujoco.mj_geomDistance(model, data, a, b, 0.1, fromto) for a in ids[0] for b in ids[1])


def test_thumb_clearance_keeps_the_thumbs_apart_when_the_hands_meet(env):
    """Both hands asked onto neighbouring keys with the forearms at their gap: the thumbs, which
    stick out towards the other hand, overlap by ~2 cm without the limit and do not touch with it
    (the linearised limit holds them at about 0, not the full clearance, against the targets' pull)."""
    env.reset()
    distances = {}
    for clearance in (0.0, 0.01):
        ik = HandsIK(env.physics, env.task, IKConfig(thumb_clearance=clearance))
        _bring_the_hands_together(ik)
        distances[clearance] = _thumb_distance(ik, env)
    assert distances[0.0] < -0.01 and distances[0.01] >= -0.002, distances
    with pytest.raises(ValueError, match="thumb_clearance=-0.01"):
        IKConfig(thumb_clearance=-0.01)
