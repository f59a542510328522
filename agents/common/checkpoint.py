"""Atomic, self-validating training checkpoints: a pytree + numpy arrays + JSON metadata.

Layout of a checkpoint root directory:

    root/
      step_000000001000/
        pytree/          agent state (params, optimizer states, rng), orbax PyTree format
        arrays/<k>.npy   one file per numpy array (e.g. the replay buffer's state_dict)
        metadata.json    caller's JSON-able dict (env step counter, config hash, ...)
        COMMITTED.json   manifest written last: step + size of every file above
      .tmp-step_...      a save in progress (or killed mid-way); never read

A checkpoint is written under a `.tmp-*` name and renamed into place only
after the manifest is on disk, so a killed job leaves either the complete new
checkpoint or nothing. `latest_checkpoint` additionally checks every file in
the manifest against its recorded size, so a checkpoint whose files were
truncated or deleted afterwards is skipped in favour of the previous one.
One writer per root directory is assumed (a save removes stale `.tmp-*` dirs).

Why not orbax's CheckpointManager: the pinned orbax-checkpoint 0.4.4 +
tensorstore 0.1.45 cannot write jax.Arrays (jax 0.4.34 passes a tensorstore
argument that 0.1.45 lacks) nor merge OCDBT files, so we hand orbax host
numpy arrays with `use_ocdbt=False` and do the step bookkeeping here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from envs import atomic

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d{12})$")
_MANIFEST = "COMMITTED.json"
_TMP_PREFIX = ".tmp-"
_ARRAY_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What `restore` returns."""

    path: Path
    step: int
    pytree: Any
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


def _step_dir_name(step: int) -> str:
    return f"step_{step:012d}"


def _file_sizes(directory: Path) -> dict[str, int]:
    return {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != _MANIFEST
    }


def _write_json(path: Path, payload: Any) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _remove_stale(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and (child.name.startswith(_TMP_PREFIX) or ".old-" in child.name):
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    pytree: Any,
    arrays: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Writes checkpoint `step` under `root` atomically; keeps the newest `keep` ones.

    Args:
      root: checkpoint root directory (created if missing).
      step: non-negative step number; names the checkpoint and orders them.
      pytree: any JAX pytree of arrays/scalars, e.g. a `DroQState` (static
        fields such as configs and apply functions are not saved; `restore`
        takes them from its template).
      arrays: flat dict of numpy arrays, e.g. `ReplayBuffer.state_dict()`.
        Keys must be usable as file names ([A-Za-z0-9_.-]).
      metadata: JSON-serialisable dict.
      keep: number of complete checkpoints to keep (older ones are deleted).

    Returns:
      The path of the new checkpoint directory.
    """
    if not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"checkpoint step must be a non-negative int, got {step!r}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    arrays = dict(arrays or {})
    for key in arrays:
        if not _ARRAY_KEY.match(key):
            raise ValueError(f"array key {key!r} is not a safe file name ([A-Za-z0-9_.-]+)")
    metadata = dict(metadata or {})
    try:
        metadata_json = json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint metadata is not JSON-serialisable: {err}") from err

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    final = root / _step_dir_name(int(step))
    tmp = root / f"{_TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()

    host_tree = jax.device_get(flax.serialization.to_state_dict(pytree))
    ocp.PyTreeCheckpointer(use_ocdbt=False).save(tmp / "pytree", host_tree)

    (tmp / "arrays").mkdir()
    for key, value in arrays.items():
        with open(tmp / "arrays" / f"{key}.npy", "wb") as f:
            np.save(f, np.asarray(value), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
    _write_json(tmp / "metadata.json", metadata_json)
    _write_json(
        tmp / _MANIFEST,
        {"step": int(step), "saved_at": time.time(), "files": _file_sizes(tmp)},
    )
    atomic.fsync_tree(tmp)

    atomic.swap_dir(tmp, final)  # re-saving a step (e.g. after a resume) swaps it out

    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _is_complete(path: Path) -> bool:
    manifest_path = path / _MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        for rel, size in files.items():
            if (path / rel).stat().st_size != size:
                logger.warning("checkpoint %s: %s has the wrong size; skipping it", path, rel)
                return False
    except FileNotFoundError as err:
        logger.warning("checkpoint %s is incomplete (%s missing); skipping it", path, err.filename)
        return False
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("checkpoint %s has an unreadable manifest (%s); skipping it", path, err)
        return False
    return True


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under `root`, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and _is_complete(child):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under `root`, or None if there is none."""
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def _match_template(template_leaf: Any, restored: Any, where: str) -> Any:
    if isinstance(template_leaf, (jax.Array, np.ndarray, np.generic)):
        restored = np.asarray(restored)
        if restored.shape == template_leaf.shape and np.can_cast(
            restored.dtype, template_leaf.dtype, casting="same_kind"
        ):  # e.g. a Python-int step counter saved from a fresh state (int64 -> int32).
            restored = restored.astype(template_leaf.dtype, copy=False)
        if restored.shape != template_leaf.shape or restored.dtype != template_leaf.dtype:
            raise ValueError(
                f"checkpoint leaf {where} is {restored.dtype}{list(restored.shape)}, the "
                f"template expects {template_leaf.dtype}{list(template_leaf.shape)}"
            )
        return jax.numpy.asarray(restored) if isinstance(template_leaf, jax.Array) else restored
    if isinstance(template_leaf, (bool, int, float)):
        return type(template_leaf)(np.asarray(restored).item())
    return restored


def _keystr(path) -> str:
    return "".join(
        f"/{getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))}" for k in path
    )


def restore(path: str | os.PathLike, template: Any, mmap_arrays: bool = True) -> Checkpoint:
    """Loads a checkpoint into the structure of `template`.

    Args:
      path: a checkpoint root (the latest complete checkpoint is used) or one
        checkpoint directory.
      template: a pytree of the same structure as the one saved (e.g. a fresh
        `droq.init(...)` with the same config); its static fields are kept and
        its leaves give the expected shapes and dtypes.
      mmap_arrays: return the numpy arrays as read-only memory maps, so a
        multi-GB replay buffer is streamed into its destination instead of
        being loaded twice into RAM.

    Raises:
      FileNotFoundError: no complete checkpoint at `path`.
      ValueError: the checkpoint does not match the template.
    """
    path = Path(path)
    if _STEP_DIR.match(path.name) and (path / _MANIFEST).exists():
        if not _is_complete(path):
            raise FileNotFoundError(f"checkpoint {path} is incomplete or damaged")
        checkpoint_dir = path
    else:
        checkpoint_dir = latest_checkpoint(path)
        if checkpoint_dir is None:
            raise FileNotFoundError(f"no complete checkpoint under {path}")

    raw = ocp.PyTreeCheckpointer(use_ocdbt=False).restore(checkpoint_dir / "pytree")
    template_state = flax.serialization.to_state_dict(template)
    template_paths = jax.tree_util.tree_flatten_with_path(template_state)[0]
    raw_paths = dict(
        (_keystr(p), v) for p, v in jax.tree_util.tree_flatten_with_path(raw)[0]
    )
    expected = {_keystr(p) for p, _ in template_paths}
    if expected != set(raw_paths):
        raise ValueError(
            f"checkpoint {checkpoint_dir} does not match the template: missing "
            f"{sorted(expected - set(raw_paths))[:5]}, unexpected {sorted(set(raw_paths) - expected)[:5]}"
        )
    leaves = [_match_template(leaf, raw_paths[_keystr(p)], _keystr(p)) for p, leaf in template_paths]
    treedef = jax.tree_util.tree_structure(template_state)
    pytree = flax.serialization.from_state_dict(
        template, jax.tree_util.tree_unflatten(treedef, leaves)
    )

    arrays = {
        p.stem: np.load(p, mmap_mode="r" if mmap_arrays else None, allow_pickle=False)
        for p in sorted((checkpoint_dir / "arrays").glob("*.npy"))
    }
    metadata = json.loads((checkpoint_dir / "metadata.json").read_text())
    manifest = json.loads((checkpoint_dir / _MANIFEST).read_text())
    return Checkpoint(
        path=checkpoint_dir,
        step=int(manifest["step"]),
        pytree=pytree,
        arrays=arrays,
        metadata=metadata,
    )
