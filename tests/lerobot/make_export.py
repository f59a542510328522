"""`make lerobot-check`, step 1 (pianoset's venv): a LeRobot export to load.

    python -m tests.lerobot.make_export OUT [--shards DIR]

Exports the complete song folders under DIR (default datasets/shards) with `pianoset export`'s
code; where there are none, first writes a small synthetic collection (the shard tests' episodes:
2 songs, 6 episodes) so that the check runs on a fresh clone. Prints the export's info as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from tasks.export.lerobot import export_lerobot
from tasks.rlds import complete_songs, write_song_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shards", type=Path, default=Path("datasets/shards"))
    args = parser.parse_args()
    songs = complete_songs(args.shards)
    source = str(args.shards)
    if not songs:
        from tests.tasks.rlds.test_shards import make_song

        scratch = Path(tempfile.mkdtemp(prefix="lerobot-check-shards-"))
        for i, song_id in enumerate(("synthetic_a", "synthetic_b")):
            write_song_dataset(scratch, song_id, make_song(np.random.default_rng(i), song_id, lengths=(30, 25, 40)))
        songs, source = complete_songs(scratch), f"synthetic ({scratch})"
    info = export_lerobot(songs, args.out)
    print(json.dumps({"source": source, "songs": [s.name for s in songs], "out": str(args.out),
                      "total_episodes": info["total_episodes"], "total_frames": info["total_frames"]}))


if __name__ == "__main__":
    main()
