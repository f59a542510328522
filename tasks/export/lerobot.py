"""Song shards as a LeRobot dataset (format v3.0): what `pianoset export --format lerobot OUT` writes.

Layout (LeRobot's `lerobot.datasets.utils` paths)::

    OUT/meta/info.json                              fps 20, robot_type, features (dtype, shape, names)
    OUT/meta/stats.json                             per feature: min, max, mean, std, count
    OUT/meta/tasks.parquet                          task (index) -> task_index
    OUT/meta/episodes/chunk-000/file-000.parquet    one row per episode: length, tasks, where its frames are,
                                                    its own stats (stats/<feature>/<stat>)
    OUT/data/chunk-000/file-000.parquet             the frames of many episodes, <= data_files_size_in_mb each

One LeRobot episode per stored episode (a rollout of a chunk); its task is "play <song title>, chunk
<i>". Frame columns: `observation.state` (the flat 1144-value observation, RP1M Table 3 order),
`action` (39), `timestamp` (frame_index / 20 s), `frame_index`, `episode_index`, `index` (global),
`task_index`, `next.reward` (the step's reward), `next.done` (last step); the episode rows add the
song, chunk, rollout seed and F1 of each episode.
Everything is written under a hidden staging folder and swapped into place whole (`envs.atomic`).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from envs import atomic
from envs.piano.spec import OBSERVATION_KEYS, observation_sizes

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"  # LeRobotDataset format version
FPS = 20  # RP1M's control rate (envs/piano: 20 Hz control, 500 Hz physics)
ROBOT_TYPE = "robopianist_shadow_hands"  # two Shadow hands at an 88-key piano (RoboPianist)
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_FILE_MB = 100  # LeRobot's default data file size
_HAND = ("A_WRJ2", "A_WRJ1", "A_THJ4", "A_THJ3", "A_THJ2", "A_FFJ4", "A_FFJ3", "A_FFJ0", "A_MFJ4", "A_MFJ3",
         "A_MFJ0", "A_RFJ4", "A_RFJ3", "A_RFJ0", "A_LFJ4", "A_LFJ3", "A_LFJ0", "forearm_tx", "forearm_ty")
# The env's action order (robopianist's reduced Shadow-hand actuators, right hand first, then the
# sustain pedal); tests/tasks/test_export.py checks it against the env's actuators.
ACTION_NAMES = tuple(f"{side}_{n}" for side in ("rh", "lh") for n in _HAND) + ("sustain",)
STATE_NAMES = tuple(f"{key}_{i}" for key, size in observation_sizes().items() for i in range(size))


def features() -> dict:
    scalar = {"shape": [1], "names": None}
    return {
        "observation.state": {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)},
        "action": {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": list(ACTION_NAMES)},
        "next.reward": {"dtype": "float32", **scalar},
        "next.done": {"dtype": "bool", **scalar},
        "timestamp": {"dtype": "float32", **scalar},
        "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar},
        "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar},
    }


def _flat_state(observation: dict) -> np.ndarray:
    return np.concatenate([np.asarray(observation[k], np.float32).reshape(len(observation[k]), -1)
                           for k in OBSERVATION_KEYS], axis=1)


def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    values = values.reshape(len(values), -1).astype(np.float64)
    return {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
            "count": np.array([len(values)])}


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stats of the concatenation of the parts (pooled mean and variance)."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    means = np.stack([p["mean"] for p in parts])
    mean = (means * counts[:, None]).sum(0) / counts.sum()
    second = ((np.stack([p["std"] for p in parts]) ** 2 + means ** 2) * counts[:, None]).sum(0) / counts.sum()
    return {"min": np.min([p["min"] for p in parts], 0), "max": np.max([p["max"] for p in parts], 0),
            "mean": mean, "std": np.sqrt(np.maximum(second - mean ** 2, 0.0)), "count": np.array([int(counts.sum())])}


def _column(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values, type=dtype)
    width = values.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=dtype), width)


class _DataFiles:
    """Frames appended episode by episode, flushed to data/chunk-C/file-F.parquet past `max_mb`."""

    def __init__(self, root: Path, max_mb: float) -> None:
        self.root, self.max_bytes = root, max_mb * 1024 ** 2
        self.chunk = self.file = 0
        self.tables: list[pa.Table] = []
        self.bytes = 0

    def where(self) -> tuple[int, int]:
        return self.chunk, self.file

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.bytes += table.nbytes

    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def flush(self) -> None:
        if not self.tables:
            return
        path = self.root / f"data/chunk-{self.chunk:03d}/file-{self.file:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(self.tables), path)
        self.tables, self.bytes = [], 0
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0


def _episode_table(ep, episode_index: int, start: int, task_index: int) -> tuple[pa.Table, dict]:
    steps = ep.steps
    n = ep.n_steps
    state = _flat_state(steps["observation"])
    action = np.asarray(steps["action"], np.float32)
    reward = np.asarray(steps["reward"], np.float32)
    done = np.asarray(steps["is_last"], bool)
    frame = np.arange(n, dtype=np.int64)
    columns = {
        "observation.state": (state, pa.float32()), "action": (action, pa.float32()),
        "next.reward": (reward, pa.float32()), "next.done": (done, pa.bool_()),
        "timestamp": ((frame / FPS).astype(np.float32), pa.float32()), "frame_index": (frame, pa.int64()),
        "episode_index": (np.full(n, episode_index, np.int64), pa.int64()),
        "index": (start + frame, pa.int64()), "task_index": (np.full(n, task_index, np.int64), pa.int64()),
    }
    table = pa.table({name: _column(values, dtype) for name, (values, dtype) in columns.items()})
    stats = {name: _stats(values) for name, (values, _) in columns.items()}
    return table, stats


def export_lerobot(song_dirs: Iterable[Path], out_dir: Path, *, titles: dict[str, str] | None = None,
                   data_file_mb: float = DATA_FILE_MB) -> dict:
    """Write the episodes of `song_dirs` (complete song folders) as the LeRobot dataset `out_dir`
    (replaced whole if it exists). `titles`: song_id -> title for the task strings. Returns info.json."""
    from tasks.rlds.reader import iterate_episodes

    song_dirs = [Path(d) for d in song_dirs]
    if not song_dirs:
        raise ValueError("export: no song folders to export")
    titles = titles or {}
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{uuid.uuid4().hex}"
    try:
        data = _DataFiles(staging, data_file_mb)
        tasks: dict[str, int] = {}
        rows: list[dict] = []
        all_stats: list[dict] = []
        total = 0
        for index, ep in enumerate(iterate_episodes(song_dirs)):
            md = ep.metadata
            task = f"play {titles.get(md['song_id']) or md['song_id']}, chunk {int(md['chunk_index'])}"
            task_index = tasks.setdefault(task, len(tasks))
            table, stats = _episode_table(ep, index, total, task_index)
            chunk, file = data.where()
            data.add(table)
            rows.append({"episode_index": index, "tasks": [task], "length": ep.n_steps,
                         "data/chunk_index": chunk, "data/file_index": file,
                         "dataset_from_index": total, "dataset_to_index": total + ep.n_steps,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                         "song_id": md["song_id"], "chunk_id": md["chunk_id"],
                         "rollout_seed": int(md["rollout_seed"]), "f1": float(md["f1"]),
                         **{f"stats/{name}/{k}": v.tolist() for name, s in stats.items() for k, v in s.items()}})
            all_stats.append(stats)
            total += ep.n_steps
            if data.full():
                data.flush()
        data.flush()
        if not rows:
            raise ValueError(f"export: the song folders {[str(d) for d in song_dirs]} hold no episodes")
        episodes_path = staging / "meta/episodes/chunk-000/file-000.parquet"
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), episodes_path)
        # LeRobot reads tasks.parquet with pandas: the task strings are the index, named `task`
        pd.DataFrame({"task_index": np.array(list(tasks.values()), np.int64)},
                     index=pd.Index(list(tasks), name="task")).to_parquet(staging / "meta/tasks.parquet")
        merged = {name: _merge([s[name] for s in all_stats]) for name in all_stats[0]}
        atomic.write_text(staging / "meta/stats.json",
                          json.dumps({n: {k: v.tolist() for k, v in s.items()} for n, s in merged.items()}))
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": ROBOT_TYPE,
            "total_episodes": len(rows), "total_frames": total, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": data_file_mb, "video_files_size_in_mb": 500,
            "fps": FPS, "splits": {"train": f"0:{len(rows)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
            "features": features(),
        }
        atomic.write_text(staging / "meta/info.json", json.dumps(info, indent=2))
        atomic.swap_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %d episodes, %d frames, %d tasks to %s", len(rows), total, len(tasks), out_dir)
    return info

