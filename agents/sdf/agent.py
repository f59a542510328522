"""Training, using, saving and loading PianoMime's SDF goal autoencoder (App. G, Algorithm 2).

    autoencoder, history = train_sdf(goals, SDFConfig(), seed=0)   # goals (N, 88) bool
    z = autoencoder.encode(goals)                                     # (N, 16)
    save_autoencoder(autoencoder, folder, extra={...}); load_autoencoder(folder)

Each step draws `batch_size` goals of the set (an epoch is a pass in a
shuffled order) and `queries_per_goal` query points uniformly in the box
around the keyboard (`query_box`), and takes one Adam step on the
reconstruction loss (Eq. 6). Key positions p_i are the key tops of our piano
model (`envs.piano.keyboard`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.common.io import config_from_dict, config_to_json
from agents.sdf import losses
from agents.sdf.config import SDFConfig
from agents.sdf.networks import make_network
from envs import atomic
from envs.piano.keyboard import key_geometry
from envs.piano.spec import N_KEYS

log = logging.getLogger(__name__)

SDF_FILE = "sdf.json"
PARAMS_FILE = "params.msgpack"
FORMAT = "pianoset-goal-sdf/1"


def key_points() -> np.ndarray:
    """(88, 3) p_i of Eq. 5: the centre of each key's top surface (m)."""
    return key_geometry().tops.astype(np.float32)


def query_box(config: SDFConfig) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the query box: the keys' box grown by `query_margin`, up to `query_height` above."""
    geometry = key_geometry()
    low, high = geometry.bounds(config.query_margin)
    high = high.copy()
    high[2] = geometry.tops[:, 2].max() + config.query_height
    return low.astype(np.float32), high.astype(np.float32)


def to_unit(points: np.ndarray, box: tuple[np.ndarray, np.ndarray]):
    low, high = box
    return 2.0 * (points - low) / (high - low) - 1.0


def sample_queries(rng: np.random.Generator, shape: tuple[int, int], box) -> np.ndarray:
    low, high = box
    return rng.uniform(low, high, size=(*shape, 3)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _optimizer(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


@functools.partial(jax.jit, static_argnames=("config",))
def update(params, opt_state, goals, queries, unit_queries, points, *, config: SDFConfig):
    """One Adam step on the reconstruction loss; returns (params, opt_state, metrics)."""
    grads, metrics = jax.grad(losses.reconstruction_loss, has_aux=True)(
        params, make_network(config).apply, goals, queries, unit_queries, points, config.max_distance)
    updates, opt_state = _optimizer(config.learning_rate).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics


@functools.partial(jax.jit, static_argnames=("config",))
def evaluate(params, goals, queries, unit_queries, points, *, config: SDFConfig):
    """Loss metrics without a step."""
    return losses.reconstruction_loss(params, make_network(config).apply, goals, queries, unit_queries, points,
                                      config.max_distance)[1]


@functools.partial(jax.jit, static_argnames=("config",))
def encode_goals(params, goals: jax.Array, *, config: SDFConfig) -> jax.Array:
    """(..., 88) goals -> (..., latent_dim) codes with autoencoder parameters `params`."""
    return make_network(config).apply({"params": params}, goals, method="encode")


def encoder_apply(params, goals: jax.Array, config: SDFConfig) -> jax.Array:
    """`encode_goals` unjitted, for use inside another jitted function."""
    return make_network(config).apply({"params": params}, goals, method="encode")


@dataclasses.dataclass
class GoalAutoencoder:
    """A trained goal autoencoder: config and parameters ({"encoder", "decoder"})."""

    config: SDFConfig
    params: Any

    def encode(self, goals) -> np.ndarray:
        return np.asarray(encode_goals(self.params, jnp.asarray(goals, jnp.float32), config=self.config))

    def predict_sdf(self, goals, queries) -> np.ndarray:
        """(B, 88) goals, (B, Q, 3) world points -> (B, Q) predicted SDF in metres."""
        unit = to_unit(np.asarray(queries, np.float32), query_box(self.config))
        out = make_network(self.config).apply({"params": self.params}, jnp.asarray(goals, jnp.float32), unit)
        return np.asarray(out) * self.config.max_distance


def _check_goals(goals) -> np.ndarray:
    goals = np.asarray(goals)
    if goals.ndim != 2 or goals.shape[1] != N_KEYS or len(goals) == 0:
        raise ValueError(f"train_sdf: goals must have shape (N >= 1, {N_KEYS}), got {goals.shape}")
    return goals.astype(np.float32)


def train_sdf(
    goals,
    config: SDFConfig = SDFConfig(),
    *,
    seed: int,
    on_progress: Optional[Callable[[int, int, dict], None]] = None,
) -> tuple[GoalAutoencoder, list[dict]]:
    """Trains the autoencoder on `goals` (N, 88) for `config.epochs` epochs (at most `max_steps` steps).

    History entries (about 20): {"step", "epoch", "loss", "rmse_m"}, the mean
    over the steps since the previous entry; the first entry is the loss of
    the initial parameters on the first batch ("step" 0).
    """
    goals = _check_goals(goals)
    rng = np.random.default_rng(seed)
    box = query_box(config)
    points = jnp.asarray(key_points())
    batch = min(config.batch_size, len(goals))
    per_epoch = max(1, len(goals) // batch)
    total = config.epochs * per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    net = make_network(config)
    params = net.init(jax.random.PRNGKey(seed), jnp.zeros((1, N_KEYS)), jnp.zeros((1, 1, 3)))["params"]
    opt_state = _optimizer(config.learning_rate).init(params)

    def draw(indices):
        queries = sample_queries(rng, (len(indices), config.queries_per_goal), box)
        return goals[indices], queries, to_unit(queries, box)

    first = draw(rng.choice(len(goals), batch, replace=False))
    initial = jax.device_get(evaluate(params, *first, points, config=config))
    history = [{"step": 0, "epoch": 0, **{k: float(v) for k, v in initial.items()}}]
    every = max(1, total // 20)
    pending, step, started = [], 0, time.perf_counter()
    while step < total:
        order = rng.permutation(len(goals))
        for begin in range(0, per_epoch * batch, batch):
            if step >= total:
                break
            params, opt_state, metrics = update(params, opt_state, *draw(order[begin:begin + batch]), points,
                                                config=config)
            pending.append(metrics)
            step += 1
            if step % every == 0 or step == total:
                values = jax.device_get(pending)
                entry = {"step": step, "epoch": step / per_epoch,
                         **{k: float(np.mean([v[k] for v in values])) for k in values[0]}}
                if not np.isfinite(entry["loss"]):
                    raise FloatingPointError(f"train_sdf: loss became {entry['loss']} at step {step}")
                history.append(entry)
                pending = []
                log.info("sdf step %d/%d loss %.4g rmse %.4f m (%.0f s)", step, total, entry["loss"],
                         entry["rmse_m"], time.perf_counter() - started)
                if on_progress is not None:
                    on_progress(step, total, entry)
    return GoalAutoencoder(config, params), history


# ----------------------------------------------------------------------------- files


def save_autoencoder(autoencoder: GoalAutoencoder, directory: Path, *, extra: dict | None = None) -> Path:
    """Writes `sdf.json` (format, config, key points, `extra`) and the parameters, atomically."""
    from flax import serialization

    meta = {"format": FORMAT, "config": config_to_json(autoencoder.config),
            "key_points": key_points().tolist(), **(extra or {})}
    with atomic.staged_dir(Path(directory)) as tmp:
        (tmp / SDF_FILE).write_text(json.dumps(meta, indent=1))
        params = jax.tree_util.tree_map(np.asarray, autoencoder.params)
        (tmp / PARAMS_FILE).write_bytes(serialization.msgpack_serialize(params))
    return Path(directory)


def read_autoencoder_meta(directory: Path) -> dict | None:
    try:
        meta = json.loads((Path(directory) / SDF_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return meta if meta.get("format") == FORMAT and (Path(directory) / PARAMS_FILE).is_file() else None


def load_autoencoder(directory: Path) -> GoalAutoencoder:
    from flax import serialization

    meta = read_autoencoder_meta(directory)
    if meta is None:
        raise FileNotFoundError(f"{directory}: not a saved goal autoencoder (no {SDF_FILE} of format {FORMAT})")
    if not np.allclose(np.asarray(meta["key_points"]), key_points(), atol=1e-6):
        raise ValueError(f"{directory}: trained on other key positions than this piano model's")
    config = config_from_dict(SDFConfig, meta["config"])
    params = serialization.msgpack_restore((Path(directory) / PARAMS_FILE).read_bytes())
    return GoalAutoencoder(config, params)
