"""Saving and loading any registered policy: ``policy.json`` (name, spec, config),
``params.msgpack`` (flax serialization) and ``normalizer.npz``, committed as one
folder swap (`envs.atomic`), so a half-written policy is never visible."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from agents.common.policy import Normalizer, Policy, PolicySpec, get_policy
from envs import atomic

POLICY_FILE = "policy.json"
PARAMS_FILE = "params.msgpack"
NORMALIZER_FILE = "normalizer.npz"


def config_to_json(config) -> dict:
    def convert(value):
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return {field.name: convert(getattr(config, field.name)) for field in dataclasses.fields(config)}


def config_from_dict(config_cls: type, payload: dict):
    """A config dataclass from JSON (lists become tuples, unknown fields are an error)."""
    names = {field.name for field in dataclasses.fields(config_cls)}
    unknown = sorted(set(payload) - names)
    if unknown:
        raise ValueError(f"{config_cls.__name__}: unknown fields {unknown}")
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload.items()})


def save_policy(policy: Policy, directory: Path, *, extra: dict | None = None) -> Path:
    """Writes `policy` to `directory` atomically (temp folder, then rename)."""
    from flax import serialization

    directory = Path(directory)
    meta = {
        "name": policy.name,
        "spec": policy.spec.as_dict(),
        "config": config_to_json(policy.config),
        **(extra or {}),
    }
    with atomic.staged_dir(directory) as tmp:
        (tmp / POLICY_FILE).write_text(json.dumps(meta, indent=1))
        (tmp / PARAMS_FILE).write_bytes(serialization.msgpack_serialize(_to_numpy(policy.params)))
        np.savez(tmp / NORMALIZER_FILE, **policy.normalizer.state_dict())
    return directory


def _to_numpy(tree):
    import jax

    return jax.tree_util.tree_map(np.asarray, tree)


def read_policy_meta(directory: Path) -> dict:
    path = Path(directory) / POLICY_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: not a saved policy (no {POLICY_FILE})") from None


def load_policy(directory: Path) -> Policy:
    """A policy saved by `save_policy`, of whichever registered kind it is."""
    from flax import serialization

    directory = Path(directory)
    meta = read_policy_meta(directory)
    policy_cls, config_cls, _ = get_policy(meta["name"])
    spec = PolicySpec(**meta["spec"])
    config = config_from_dict(config_cls, meta["config"])
    params = serialization.msgpack_restore((directory / PARAMS_FILE).read_bytes())
    with np.load(directory / NORMALIZER_FILE) as data:
        normalizer = Normalizer.from_state_dict(dict(data))
    return policy_cls.from_parts(spec=spec, config=config, params=params, normalizer=normalizer)
