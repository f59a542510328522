"""Diffusion Policy: hand-computed DDPM/DDIM math, the U-Net, EMA, learning a tiny dataset, save/load."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.common.io import load_policy, read_policy_meta, save_policy
from agents.common.policy import get_policy
from agents.diffusion import (
    DiffusionConfig,
    DiffusionPolicy,
    ema_decay,
    ema_update,
    init_state,
    learning_rate,
    sample_normalized_actions,
    schedule,
    train,
    update,
)
from agents.diffusion.agent import normalized_batch
from agents.diffusion.networks import Conv1d, Upsample1d, init_params_fast, live_taps, make_unet
from envs.piano.spec import OBSERVATION_KEYS
from tasks.rlds import Episode
from tasks.rlds.reader import WindowDataset

# One small configuration for every test that trains or samples, so jit compiles
# each function once. A single U-Net level (no down/upsampling) learns the toy
# task in a few hundred steps; the two-level path is checked in the U-Net tests.
# The fast learning rate and short EMA horizon (max decay 0.9) are for the toy
# run; the structure (DDIM, 100 train / 10 inference steps, clipping, EMA power
# 0.75, linear schedule with warm-up) is the default's.
FIT_CONFIG = DiffusionConfig(
    down_dims=(64,),
    kernel_size=3,
    diffusion_step_embed_dim=32,
    learning_rate=1e-2,
    warmup_steps=10,
    batch_size=256,
    ema_max_decay=0.9,
)
FIT_STEPS = 200
EPISODE_STEPS = 40
CONSTANT_ACTION = 0.7


def toy_episodes(rng: np.random.Generator, n_episodes: int = 4) -> list[Episode]:
    """Episodes whose hand_state is (sin, cos) of a phase advancing 0.3 rad per step and whose
    action is a deterministic function of the current observation:
    (sin p, cos 2p, 0.7). Every other observation key is one constant dimension."""
    episodes = []
    for _ in range(n_episodes):
        phase = rng.uniform(0, 2 * np.pi) + 0.3 * np.arange(EPISODE_STEPS)
        observation = {key: np.zeros((EPISODE_STEPS, 1), np.float32) for key in OBSERVATION_KEYS}
        observation["hand_state"] = np.stack([np.sin(phase), np.cos(phase)], -1).astype(np.float32)
        observation["sustain_state"] = np.full((EPISODE_STEPS, 1), 0.25, np.float32)
        action = np.stack(
            [np.sin(phase), np.cos(2 * phase), np.full(EPISODE_STEPS, CONSTANT_ACTION)], -1
        ).astype(np.float32)
        episodes.append(Episode(steps={"observation": observation, "action": action}, metadata={}))
    return episodes


def windows(config: DiffusionConfig, episodes) -> WindowDataset:
    spec = config.spec_for(1, 1)
    return WindowDataset.from_episodes(
        episodes, spec.obs_horizon, spec.pred_horizon, action_offset=spec.action_offset
    )


@pytest.fixture(scope="module")
def dataset():
    return windows(FIT_CONFIG, toy_episodes(np.random.default_rng(0)))


@pytest.fixture(scope="module")
def trained(dataset):
    policy, history = train(dataset, FIT_CONFIG, steps=FIT_STEPS, seed=0)
    return policy, history


# ----------------------------------------------------------------------------- config


def test_defaults_follow_rp1m_table_8():
    config = DiffusionConfig()
    assert (config.obs_horizon, config.pred_horizon, config.action_horizon) == (2, 4, 1)
    assert config.down_dims == (256, 512, 1024)
    assert config.batch_size == 128
    assert config.learning_rate == 1e-4
    assert config.lr_schedule == "linear"
    assert config.ema_power == 0.75
    assert config.weight_decay == 0.0  # Table 8: Adam
    # diffusion_policy / robomimic where Table 8 is silent.
    assert (config.kernel_size, config.n_groups, config.diffusion_step_embed_dim) == (5, 8, 256)
    assert (config.num_train_timesteps, config.num_inference_steps) == (100, 5)  # 5: see the config docstring
    assert config.beta_schedule == "squaredcos_cap_v2" and config.clip_sample and config.set_alpha_to_one
    spec = config.spec_for(1144, 39)
    assert (spec.obs_horizon, spec.pred_horizon, spec.action_horizon, spec.action_offset) == (2, 4, 1, -1)
    assert spec.current_index == 1  # the chunk starts at the first observed step
    assert get_policy("diffusion") == (DiffusionPolicy, DiffusionConfig, train)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"down_dims": (256, 0)}, r"down_dims must be a non-empty sequence of positive ints, got \(256, 0\)"),
        ({"n_groups": 7}, r"n_groups=7 must divide every down_dims entry"),
        ({"pred_horizon": 6}, r"pred_horizon=6 must be divisible by 2 \*\* \(len\(down_dims\) - 1\) = 4"),
        ({"num_inference_steps": 200}, r"num_inference_steps=200 must be <= num_train_timesteps=100"),
        ({"kernel_size": 4}, r"kernel_size must be odd.*got 4"),
        ({"beta_schedule": "cosine"}, r"beta_schedule must be one of .* got 'cosine'"),
        ({"lr_schedule": "step"}, r"lr_schedule must be one of .* got 'step'"),
        ({"learning_rate": -1.0}, r"learning_rate must be a finite number > 0, got -1.0"),
        ({"ema_max_decay": 1.0}, r"ema_min_decay, ema_max_decay .* got 0.0, 1.0"),
        ({"batch_size": 0}, r"batch_size must be an int >= 1, got 0"),
        ({"action_horizon": 4}, r"pred_horizon=4 is too short to return action_horizon=4"),
    ],
)
def test_config_rejects_bad_values_naming_them(changes, message):
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**changes)


def test_config_accepts_lists_and_stays_hashable():
    config = DiffusionConfig(down_dims=[256, 512, 1024])
    assert config.down_dims == (256, 512, 1024)
    assert hash(config) == hash(DiffusionConfig())


# ----------------------------------------------------------------------------- DDPM / DDIM math


def hand_alphas_cumprod(num_train_timesteps: int) -> np.ndarray:
    """squaredcos_cap_v2, written out: beta_t = min(1 - f((t+1)/T) / f(t/T), 0.999),
    f(u) = cos((u + 0.008) / 1.008 * pi / 2) ** 2, alpha_bar_t = prod_{s<=t} (1 - beta_s)."""
    values, product = [], 1.0
    for t in range(num_train_timesteps):
        f0 = math.cos((t / num_train_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2
        f1 = math.cos(((t + 1) / num_train_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2
        product *= 1.0 - min(1.0 - f1 / f0, 0.999)
        values.append(product)
    return np.array(values)


def test_cosine_schedule_matches_hand_computation():
    alphas = schedule.alphas_cumprod("squaredcos_cap_v2", 100)
    assert alphas.dtype == np.float32 and alphas.shape == (100,)
    np.testing.assert_allclose(alphas, hand_alphas_cumprod(100), rtol=1e-6)
    # Spot values (T = 100), and the last beta is capped at 0.999.
    np.testing.assert_allclose(alphas[[0, 40, 50, 90]], [0.99936872, 0.63251575, 0.47826463, 0.01954438], rtol=1e-6)
    assert schedule.betas("squaredcos_cap_v2", 100)[-1] == 0.999
    linear = schedule.betas("linear", 5, 0.1, 0.5)
    np.testing.assert_allclose(linear, [0.1, 0.2, 0.3, 0.4, 0.5])


def test_ddim_timestep_grid():
    assert schedule.ddim_timesteps(100, 10).tolist() == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    # T // n = 6 when n does not divide T (diffusers' "leading" spacing).
    assert schedule.ddim_timesteps(50, 8).tolist() == [42, 36, 30, 24, 18, 12, 6, 0]
    tables = schedule.ddim_tables(schedule.alphas_cumprod("squaredcos_cap_v2", 100), 10)
    hand = hand_alphas_cumprod(100)
    np.testing.assert_allclose(tables.alpha_bar, hand[[90, 80, 70, 60, 50, 40, 30, 20, 10, 0]], rtol=1e-6)
    np.testing.assert_allclose(tables.alpha_bar_prev, list(hand[[80, 70, 60, 50, 40, 30, 20, 10, 0]]) + [1.0], rtol=1e-6)
    without_one = schedule.ddim_tables(schedule.alphas_cumprod("squaredcos_cap_v2", 100), 10, set_alpha_to_one=False)
    np.testing.assert_allclose(without_one.alpha_bar_prev[-1], hand[0], rtol=1e-6)


def test_ddim_step_matches_the_formula():
    hand = hand_alphas_cumprod(100)
    a_t, a_prev = hand[50], hand[40]  # the step from t = 50 to t = 40 of a 10-step grid
    x = np.array([0.3, -1.2, 2.0])
    eps = np.array([0.5, -0.1, 1.5])
    # x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t); the last two fall outside [-1, 1] and are clipped.
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    np.testing.assert_allclose(x0, [-0.0884315, -1.6307445, 1.3252968], atol=1e-6)
    clipped = np.array([x0[0], -1.0, 1.0])
    expected = math.sqrt(a_prev) * clipped + math.sqrt(1 - a_prev) * eps
    got = schedule.ddim_step(jnp.asarray(x), jnp.asarray(eps), a_t, a_prev, clip_sample=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    unclipped = schedule.ddim_step(jnp.asarray(x), jnp.asarray(eps), a_t, a_prev, clip_sample=False)
    np.testing.assert_allclose(unclipped, math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps, rtol=1e-5)
    # The last step (alpha_bar_prev = 1) returns the clipped x0.
    np.testing.assert_allclose(schedule.ddim_step(x, eps, a_t, 1.0, clip_sample=True), clipped, rtol=1e-5)
    # The forward process: sqrt(a) x0 + sqrt(1 - a) eps, per-sample alpha.
    noised = schedule.add_noise(jnp.ones((2, 3)), jnp.full((2, 3), 2.0), jnp.array([0.25, 1.0]))
    np.testing.assert_allclose(noised, [[0.5 + 2 * math.sqrt(0.75)] * 3, [1.0] * 3], rtol=1e-6)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize(
    "length, kernel, stride, padding",
    [(4, 5, 1, 2), (2, 5, 1, 2), (1, 5, 1, 2), (4, 1, 1, 0), (4, 3, 2, 1), (2, 3, 2, 1)],
)
def test_conv1d_equals_lax_convolution(length, kernel, stride, padding):
    """Tap sums with dead taps left out give exactly PyTorch's/lax's convolution."""
    x = jnp.asarray(np.random.default_rng(length).normal(size=(70, length, 6)), jnp.float32)
    module = Conv1d(5, kernel, stride=stride, padding=padding)
    variables = module.init(jax.random.PRNGKey(0), x)
    p = variables["params"]
    weight = jnp.stack([p[f"kernel_{j}"] for j in range(kernel)])  # PyTorch's weight, as (k, C_in, C_out)
    expected = jax.lax.conv_general_dilated(
        x, weight, (stride,), [(padding, padding)], dimension_numbers=("NWC", "WIO", "NWC")
    ) + p["bias"]
    np.testing.assert_allclose(module.apply(variables, x), expected, atol=1e-5)
    np.testing.assert_allclose(module.apply(variables, x[:2]), expected[:2], atol=1e-5)  # few-rows path


def test_live_taps():
    assert live_taps(5, 1, 2, 1) == ([2], 1)  # length 1: only the centre tap sees data
    assert live_taps(5, 1, 2, 2) == ([1, 2, 3], 2)
    assert live_taps(5, 1, 2, 4) == ([0, 1, 2, 3, 4], 4)
    assert live_taps(3, 2, 1, 2) == ([1, 2], 1)


@pytest.mark.parametrize("length", [1, 2])
def test_upsample_equals_transposed_convolution(length):
    x = jnp.asarray(np.random.default_rng(length).normal(size=(3, length, 6)), jnp.float32)
    module = Upsample1d(5)
    variables = module.init(jax.random.PRNGKey(0), x)
    p = variables["params"]
    # ConvTranspose1d(k=4, stride=2, padding=1) = conv over the 2x-dilated input padded by k - 1 - 1 = 2.
    weight = jnp.stack([p[f"kernel_{j}"] for j in range(4)])
    expected = jax.lax.conv_general_dilated(
        x, weight, (1,), [(2, 2)], lhs_dilation=(2,), dimension_numbers=("NWC", "WIO", "NWC")
    ) + p["bias"]
    out = module.apply(variables, x)
    assert out.shape == (3, 2 * length, 5)
    np.testing.assert_allclose(out, expected, atol=1e-5)


TWO_LEVELS = DiffusionConfig(down_dims=(16, 32), kernel_size=5, diffusion_step_embed_dim=16)


@pytest.fixture(scope="module")
def two_level_unet():
    """A two-level U-Net (Tp = 4 -> 2 -> 1 and back), its jitted init, and one jitted function
    giving both the full forward pass and the sampler's split-FiLM one."""
    net = make_unet(TWO_LEVELS, action_dim=2, global_cond_dim=6)
    init = jax.jit(lambda key, *args: init_params_fast(net, key, *args))

    @jax.jit
    def forward(params, sample, timesteps, cond):
        variables = {"params": params}
        full = net.apply(variables, sample, timesteps, cond)
        time_films = net.apply(variables, timesteps, method="film_from_time")
        obs_films = net.apply(variables, cond, method="film_from_obs")
        films = [t + o for t, o in zip(time_films, obs_films)]
        return full, net.apply(variables, sample, films, method="denoise")

    return net, init, forward


def test_unet_shape_and_conditioning(two_level_unet):
    net, init, forward = two_level_unet
    rng = np.random.default_rng(0)
    sample = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32)
    cond = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    timesteps = jnp.array([5, 50, 95])
    params = init(jax.random.PRNGKey(0), sample, timesteps, cond)
    out, split = forward(params, sample, timesteps, cond)
    assert out.shape == (3, 4, 2)
    # The sampler's split FiLM (time part + observation part, then denoise) is the same function.
    np.testing.assert_allclose(split, out, atol=1e-5)
    # Changing the condition of sample 0 changes its output and no other sample's.
    changed, _ = forward(params, sample, timesteps, cond.at[0].add(1.0))
    assert float(jnp.abs(changed[0] - out[0]).max()) > 1e-3
    np.testing.assert_allclose(changed[1:], out[1:], atol=1e-6)
    # So does the timestep.
    later, _ = forward(params, sample, timesteps.at[0].set(6), cond)
    assert float(jnp.abs(later[0] - out[0]).max()) > 1e-4


def test_init_draws_pytorch_default_uniforms(two_level_unet):
    net, init, _ = two_level_unet
    args = (jnp.zeros((3, 4, 2)), jnp.zeros((3,), jnp.int32), jnp.zeros((3, 6)))
    params = init(jax.random.PRNGKey(0), *args)
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), *args)["params"]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(shapes)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, init(jax.random.PRNGKey(0), *args))
    # FiLM Linear on [time features (16), obs (6)]: bound 1/sqrt(22) for both halves.
    block = params["mid_blocks_0"]
    bound = 1 / math.sqrt(16 + 6)
    for leaf in (block["cond_obs"]["kernel"], block["cond_time"]["kernel"], block["cond_time"]["bias"]):
        assert float(jnp.abs(leaf).max()) <= bound
        assert float(jnp.abs(leaf).max()) > 0.8 * bound
    conv = params["up_blocks_0_0"]["block_in"]["Conv1d_0"]
    big = np.stack([conv[f"kernel_{j}"] for j in range(5)])  # (5, 64, 16)
    conv_bound = 1 / math.sqrt(5 * 64)
    assert np.abs(big).max() <= conv_bound
    assert abs(big.std() - conv_bound / math.sqrt(3)) < 0.05 * conv_bound  # U(-b, b) has std b / sqrt(3)
    norm = params["mid_blocks_0"]["block_in"]["GroupNorm_0"]
    np.testing.assert_array_equal(norm["scale"], 1.0)
    np.testing.assert_array_equal(norm["bias"], 0.0)
    other = init(jax.random.PRNGKey(1), *args)
    assert not np.array_equal(other["final_conv"]["kernel_0"], params["final_conv"]["kernel_0"])


# ----------------------------------------------------------------------------- optimisation


def snapshot(tree):
    """numpy copies (not views of buffers that a donating update may reuse)."""
    return jax.tree_util.tree_map(lambda leaf: np.array(leaf, copy=True), tree)


def test_ema_decay_and_update_by_hand():
    config = DiffusionConfig()  # power 0.75, inv_gamma 1, max 0.9999
    decays = [float(ema_decay(config, step)) for step in (0, 1, 2, 11, 10**7)]
    # s = max(step - 1, 0); 0 at s = 0, else 1 - (1 + s) ** -0.75 capped at 0.9999.
    np.testing.assert_allclose(decays, [0.0, 0.0, 1 - 2**-0.75, 1 - 11**-0.75, 0.9999], rtol=1e-6)
    np.testing.assert_allclose(decays[2], 0.405396, atol=1e-6)
    ema = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(4.0)}
    params = {"w": jnp.array([3.0, 6.0]), "b": jnp.array(0.0)}
    out = ema_update(ema, params, 0.25)  # 0.25 * ema + 0.75 * params
    np.testing.assert_allclose(out["w"], [2.5, 5.0])
    np.testing.assert_allclose(out["b"], 1.0)


def test_learning_rate_schedules_by_hand():
    linear = DiffusionConfig(learning_rate=1e-3, warmup_steps=10)
    got = [float(learning_rate(linear, s, 110)) for s in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(got, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    cosine = dataclasses.replace(linear, lr_schedule="cosine")
    got = [float(learning_rate(cosine, s, 110)) for s in (5, 35, 60, 110)]
    np.testing.assert_allclose(got, [5e-4, 1e-3 * 0.5 * (1 + math.cos(math.pi / 4)), 5e-4, 0.0], atol=1e-9)
    constant = dataclasses.replace(linear, lr_schedule="constant")
    assert float(learning_rate(constant, 100, 110)) == pytest.approx(1e-3)


def test_update_keeps_an_ema_of_the_weights(dataset, trained):
    policy, _ = trained
    config = FIT_CONFIG
    state = init_state(jax.random.PRNGKey(3), config, dataset.action_dim, 2 * dataset.obs_dim, total_steps=100)
    rng = np.random.default_rng(1)
    ema = snapshot(state.ema_params)
    params_before = snapshot(state.params)
    for step in range(4):
        batch = normalized_batch(policy.normalizer, *dataset.sample(config.batch_size, rng))
        state, metrics = update(state, *batch, jax.random.PRNGKey(step))  # donates the old state
        params = snapshot(state.params)
        decay = float(ema_decay(config, step))
        assert float(metrics["ema_decay"]) == pytest.approx(decay)
        ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), snapshot(state.ema_params), ema
        )
        if step == 0:
            # Warm-up starts at learning rate 0: the first update leaves the weights unchanged.
            assert float(metrics["lr"]) == 0.0
            jax.tree_util.tree_map(np.testing.assert_array_equal, params, params_before)
    assert int(state.step) == 4
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), params, params_before)
    assert max(jax.tree_util.tree_leaves(moved)) > 0


# ----------------------------------------------------------------------------- learning


def test_fits_a_tiny_dataset(dataset, trained):
    policy, history = trained
    assert isinstance(policy, DiffusionPolicy) and policy.name == "diffusion"
    assert [h["step"] for h in history] == list(range(10, FIT_STEPS + 1, 10))
    first, last = history[0]["loss"], history[-1]["loss"]
    assert last < first / 10, f"noise-prediction loss fell only from {first:.3f} to {last:.3f}"
    obs, actions = dataset.get_batch(np.arange(len(dataset)))
    policy.reset(len(obs))
    predicted = policy.predict_chunk(obs, jax.random.PRNGKey(1))
    assert predicted.shape == (len(obs), 1, 3) and predicted.dtype == np.float32
    target = actions[:, policy.spec.current_index]  # the action at the current step
    error = np.abs(predicted[:, 0] - target)
    # Tolerance in env units: predicting each dimension's mean would give about 0.6.
    assert error[:, :2].mean() < 0.1, f"mean |error| {error[:, :2].mean(0)}"
    assert np.percentile(error[:, :2], 90) < 0.25, f"90th percentile |error| {np.percentile(error[:, :2], 90)}"
    # A dimension constant in the data comes back as that constant.
    np.testing.assert_allclose(predicted[:, 0, 2], CONSTANT_ACTION, rtol=1e-6)
    # robomimic's 10 DDIM steps fit no better than the default 5
    assert policy.config.num_inference_steps == 5
    ten = DiffusionPolicy.from_parts(spec=policy.spec, config=dataclasses.replace(policy.config, num_inference_steps=10),
                                     params=policy.params, normalizer=policy.normalizer)
    error_ten = np.abs(ten.predict_chunk(obs, jax.random.PRNGKey(1))[:, 0] - target)[:, :2].mean()
    assert error[:, :2].mean() < 1.25 * error_ten + 0.01, (error[:, :2].mean(), error_ten)


def test_sampler_loop_equals_step_by_step_denoising(dataset, trained):
    """The jitted fori_loop sampler = DDIM steps with the full U-Net call, from the same noise."""
    policy, _ = trained
    config = policy.config
    obs, _ = dataset.get_batch(np.arange(len(dataset)))  # the batch size predict_chunk compiled for
    global_cond = policy.normalizer.normalize_obs(obs).reshape(len(obs), -1)
    key = jax.random.PRNGKey(7)
    sampled = sample_normalized_actions(policy.params, global_cond, key, config=config, action_dim=3)
    net = make_unet(config, 3, global_cond.shape[-1])
    apply = jax.jit(net.apply)
    tables = schedule.config_ddim_tables(config)
    x = jax.random.normal(key, (len(obs), config.pred_horizon, 3))
    for i, t in enumerate(tables.timesteps):
        eps = apply({"params": policy.params}, x, jnp.full((len(obs),), t), global_cond)
        x = schedule.ddim_step(x, eps, tables.alpha_bar[i], tables.alpha_bar_prev[i], clip_sample=True)
    np.testing.assert_allclose(sampled, x, atol=1e-4)
    assert float(jnp.abs(sampled).max()) <= 1.0


def test_save_load_round_trip_predicts_identically(dataset, trained, tmp_path):
    policy, _ = trained
    save_policy(policy, tmp_path / "policy", extra={"steps": FIT_STEPS})
    assert read_policy_meta(tmp_path / "policy")["name"] == "diffusion"
    loaded = load_policy(tmp_path / "policy")
    assert isinstance(loaded, DiffusionPolicy)
    assert loaded.config == policy.config and loaded.spec == policy.spec
    obs, _ = dataset.get_batch(np.arange(len(dataset)))
    key = jax.random.PRNGKey(11)
    np.testing.assert_array_equal(loaded.predict_chunk(obs, key), policy.predict_chunk(obs, key))


def test_inputs_are_checked(dataset, trained):
    policy, _ = trained
    with pytest.raises(ValueError, match=r"predict_chunk: obs has shape \(2, 7\), expected \(B, 2, 7\)"):
        policy.predict_chunk(np.zeros((2, 7), np.float32), jax.random.PRNGKey(0))
    wrong = WindowDataset.from_episodes(toy_episodes(np.random.default_rng(0), 1), 2, 2, action_offset=-1)
    with pytest.raises(ValueError, match=r"dataset windows .* = \(2, 2, -1\), but the config needs \(2, 4, -1\)"):
        train(wrong, FIT_CONFIG, steps=1, seed=0)
    with pytest.raises(ValueError, match=r"steps must be an int >= 1, got 0"):
        train(dataset, FIT_CONFIG, steps=0, seed=0)
    params = jax.tree_util.tree_map(np.asarray, policy.params)
    params["final_conv"]["kernel_0"] = np.zeros((64, 4), np.float32)
    with pytest.raises(ValueError, match=r"parameter \['final_conv'\]\['kernel_0'\] has shape \(64, 4\), expected \(64, 3\)"):
        DiffusionPolicy.from_parts(spec=policy.spec, config=policy.config, params=params, normalizer=policy.normalizer)


def test_obs_film_from_goal_rows_matches_the_dense_product():
    """On RP1M observations the FiLM's goal part is a sum of weight rows (`agents.diffusion.film`):
    the same films and actions as the dense product, to float rounding; other windows go dense."""
    from agents.common.policy import Normalizer
    from agents.diffusion import init_params
    from agents.diffusion.film import ObsFilm, binary_dims
    from envs.piano.spec import ACTION_DIM, OBS_DIM

    config = DiffusionConfig(down_dims=(32,), kernel_size=3, diffusion_step_embed_dim=16, num_inference_steps=3)
    spec = config.spec_for(OBS_DIM, ACTION_DIM)
    cond_dim = spec.obs_horizon * OBS_DIM
    params = init_params(jax.random.PRNGKey(0), config, ACTION_DIM, cond_dim)
    rng = np.random.default_rng(0)
    goal = binary_dims()
    assert goal.size == 11 * 88 + 11

    def windows(n):
        obs = rng.normal(size=(n, spec.obs_horizon, OBS_DIM)).astype(np.float32)
        obs[..., goal] = rng.random((n, spec.obs_horizon, goal.size)) < 0.03
        return obs

    fit = windows(200)
    normalizer = Normalizer.fit(fit[:, -1], rng.uniform(-1, 1, (200, ACTION_DIM)))
    obs = windows(3)
    film = ObsFilm.build(params, config, spec, normalizer)
    net = make_unet(config, ACTION_DIM, cond_dim)
    global_cond = normalizer.normalize_obs(obs).reshape(3, -1)
    dense = net.apply({"params": params}, jnp.asarray(global_cond), method="film_from_obs")
    fast = film(obs)
    assert len(fast) == len(dense)
    for a, b in zip(fast, dense):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * float(jnp.abs(b).max()))
    policy = DiffusionPolicy(spec, config, params, normalizer)
    dense_policy = DiffusionPolicy(spec, config, params, normalizer)
    dense_policy._obs_film = None  # the dense product
    key = jax.random.PRNGKey(3)
    actions = policy.predict_chunk(obs, key)
    assert policy._obs_film is not None
    np.testing.assert_allclose(actions, dense_policy.predict_chunk(obs, key), rtol=0, atol=1e-4)
    obs[0, 0, goal[5]] = 0.5  # not a 0/1 goal: the dense way, exactly
    assert film(obs) is None
    np.testing.assert_array_equal(policy.predict_chunk(obs, key), dense_policy.predict_chunk(obs, key))
