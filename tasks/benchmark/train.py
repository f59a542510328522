"""Training one policy per (training set, method), keyed by everything that shapes it."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tasks.benchmark.config import BENCHMARK_VERSION, BenchmarkError, Method, digest, jsonable, read_json, tuplify

log = logging.getLogger(__name__)


def resolve_config(method: Method):
    """The method's policy config: the registered config class's defaults with the overrides."""
    from agents.common.policy import get_policy

    _, config_cls, _ = get_policy(method.policy)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(method.config) - fields)
    if unknown:
        raise BenchmarkError(
            f"benchmark method {method.label!r}: {config_cls.__name__} has no field(s) {unknown} "
            f"(fields: {sorted(fields)})"
        )
    try:
        return config_cls(**tuplify(dict(method.config)))
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"benchmark method {method.label!r}: {exc}") from None


def _policy_code_version(policy_name: str) -> str:
    """The policy package's CODE_VERSION, if it declares one (bump it to retrain)."""
    from agents.common.policy import get_policy

    policy_cls = get_policy(policy_name)[0]
    package = sys.modules.get(policy_cls.__module__.rsplit(".", 1)[0])
    return str(getattr(package, "CODE_VERSION", ""))


def song_shards_digest(song_dir: Path) -> str:
    """A song folder's content identity: its manifest's file checksums."""
    from tasks.rlds import read_manifest

    manifest = read_manifest(song_dir)
    return digest(sorted((f.path, f.sha256) for f in manifest.files))


def policy_key(method: Method, train_dirs: Sequence[Path], *, steps: int, seed: int) -> str:
    """Run-independent identity of a trained policy, `<policy>-<16 hex>` (a folder name)."""
    from agents.common.io import config_to_json

    config = resolve_config(method)
    payload = {
        "policy": method.policy,
        "config": config_to_json(config),
        "steps": steps,
        "seed": seed,
        "songs": [(Path(d).name, song_shards_digest(Path(d))) for d in train_dirs],
        "code": [BENCHMARK_VERSION, _policy_code_version(method.policy)],
    }
    return f"{method.policy}-{digest(payload)[:16]}"


def policy_done(policy_dir: Path, key: str) -> bool:
    from agents.common.io import PARAMS_FILE

    meta = read_json(Path(policy_dir) / "policy.json")
    return bool(meta) and meta.get("policy_key") == key and (Path(policy_dir) / PARAMS_FILE).is_file()


_EPISODES_LOCK = threading.Lock()
_EPISODES_CACHE: dict[tuple, list] = {}  # the last training set read (the next method usually reuses it)


def _training_episodes(train_dirs: Sequence[Path]) -> list:
    from tasks.rlds.reader import iterate_episodes

    key = tuple((str(d), song_shards_digest(Path(d))) for d in train_dirs)
    with _EPISODES_LOCK:
        if key not in _EPISODES_CACHE:
            _EPISODES_CACHE.clear()
            _EPISODES_CACHE[key] = list(iterate_episodes([Path(d) for d in train_dirs]))
        return _EPISODES_CACHE[key]


def train_policy(
    method: Method,
    train_dirs: Sequence[str],
    policies_dir: str,
    *,
    key: str,
    steps: int,
    seed: int,
    profile: str = "",
    on_progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train `method` on the song folders and save it under `<policies_dir>/<key>/`
    (nothing to do when it is there already); returns a small summary."""
    from agents.common.io import save_policy
    from agents.common.policy import get_policy
    from envs.piano.spec import OBSERVATION_KEYS
    from tasks.rlds.reader import WindowDataset

    policy_dir = Path(policies_dir) / key
    if policy_done(policy_dir, key):
        meta = read_json(policy_dir / "policy.json")
        return {"policy_key": key, "policy_dir": str(policy_dir), "reused": True,
                "final_loss": meta.get("final_loss"), "train_seconds": meta.get("train_seconds")}
    _, _, train_fn = get_policy(method.policy)
    config = resolve_config(method)
    episodes = _training_episodes([Path(d) for d in train_dirs])
    first = episodes[0].steps
    obs_dim = sum(int(np.prod(first["observation"][k].shape[1:])) for k in OBSERVATION_KEYS)
    action_dim = int(first["action"].shape[-1])
    spec = config.spec_for(obs_dim, action_dim)
    dataset = WindowDataset.from_episodes(episodes, spec.obs_horizon, spec.pred_horizon,
                                          action_offset=spec.action_offset)
    log.info("%s: training %s on %d songs (%d episodes, %d steps) for %d steps", method.label, key,
             len(train_dirs), dataset.n_episodes, len(dataset), steps)
    started = time.perf_counter()
    policy, history = train_fn(dataset, config, steps=steps, seed=seed, on_progress=on_progress)
    seconds = time.perf_counter() - started
    history = jsonable(list(history or []))
    final_loss = history[-1].get("loss") if history and isinstance(history[-1], Mapping) else None
    save_policy(policy, policy_dir, extra={
        "policy_key": key,
        "method": method.as_dict(),
        "train_songs": [Path(d).name for d in train_dirs],
        "train_episodes": dataset.n_episodes,
        "train_windows": len(dataset),
        "steps": steps,
        "profile": profile,
        "seed": seed,
        "train_seconds": round(seconds, 2),
        "final_loss": final_loss,
        "history": history,
        "code_version": [BENCHMARK_VERSION, _policy_code_version(method.policy)],
    })
    return {"policy_key": key, "policy_dir": str(policy_dir), "reused": False, "final_loss": final_loss,
            "train_seconds": round(seconds, 2)}


# ----------------------------------------------------------------------------- planning
