"""The README's command-line section and every DVC stage, run as a user runs them: the installed
`pianoset` and `dvc` in a fresh clone, at smoke sizes (a 3 s song, 4 rollouts, tiny policies).

The tests run in order on one clone: catalog, songs, chunks, evaluate, collect (`dvc repro
collect`), status, stats (`dvc repro stats`), render, benchmark (`dvc repro benchmark`, all six
default methods), publish, pull into a second clone.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pretty_midi
import pytest
import yaml

from tests.acceptance.conftest import REPO, Project, fresh_clone

N_ROLLOUTS = 4
# RP1M Table 2's six columns (the shipped params.yaml's labels) at sizes that train in seconds.
TINY_METHODS = [
    {"label": "BC (256)", "policy": "bc", "config": {"hidden_dims": [8, 8, 8], "batch_size": 16}},
    {"label": "BC (1024)", "policy": "bc", "config": {"hidden_dims": [16, 16, 16], "batch_size": 16}},
    {"label": "BC (4096)", "policy": "bc", "config": {"hidden_dims": [16] * 6, "batch_size": 16}},
    {"label": "IBC", "policy": "ibc", "config": {"hidden_dims": [16, 16], "num_counter_examples": 8,
                                                 "inference_samples": 32, "inference_iterations": 2,
                                                 "lr_warmup_steps": 0, "batch_size": 16}},
    {"label": "BC-RNN", "policy": "bc_rnn", "config": {"rnn_hidden_dim": 8, "rnn_num_layers": 1, "head_dims": [8],
                                                       "batch_size": 16}},
    {"label": "Diffusion Policy", "policy": "diffusion",
     "config": {"down_dims": [8, 16], "n_groups": 4, "diffusion_step_embed_dim": 8, "num_train_timesteps": 10,
                "num_inference_steps": 2, "warmup_steps": 0, "batch_size": 16}},
]


def _tiny_song(path: Path) -> Path:
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i, (right, left) in enumerate([(72, 48), (74, 50), (76, 52), (77, 53), (79, 55)]):
        piano.notes += [pretty_midi.Note(velocity=80, pitch=right, start=0.45 * i, end=0.45 * i + 0.4),
                        pretty_midi.Note(velocity=70, pitch=left, start=0.45 * i, end=0.45 * i + 0.4)]
    midi.instruments.append(piano)
    midi.write(str(path))
    return path


@pytest.fixture(scope="module")
def project(installed, tmp_path_factory) -> Project:
    """A fresh clone whose params.yaml is the shipped one with smoke sizes (every key it sets is one
    the shipped file has, so the parser the commands share is what is tested)."""
    scratch = tmp_path_factory.mktemp("acceptance")
    root = fresh_clone(REPO, scratch / "clone")
    _tiny_song(root / "tiny.mid")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["catalog"]["sources"] = ["robopianist"]
    params["collect"].update(songs=["tiny.mid"], n_rollouts=N_ROLLOUTS, workers=1, parallel_chunks=1,
                             register=False)  # `dvc repro` records the outputs itself
    bench = params["benchmark"]
    bench.update(methods=TINY_METHODS, steps=20)
    bench["groups"] = {"in_distribution": {"limit": 1}, "easy_ood": {"songs": []}, "hard_ood": {"songs": []}}
    bench["eval"].update(max_steps=12, lanes=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return Project(root, scratch)


def test_catalog_stage_and_songs_command(project):
    project.dvc("repro", "catalog@robopianist")
    rows = (project.root / "datasets/catalog/robopianist.jsonl").read_text().splitlines()
    assert len(rows) >= 5
    _, doc, stderr = project.pianoset("songs", "--source", "robopianist")
    assert doc["counts"]["robopianist"]["total"] == len(rows)
    assert any(s["ref"] == "robopianist:TwinkleTwinkleRousseau" for s in doc["songs"])
    # A CPU-only user sees no TensorFlow CUDA registration errors nor deprecation noise.
    assert "Unable to register" not in stderr and "DeprecationWarning" not in stderr


def test_sdf_pretraining_command(project):
    args = ("--source", "robopianist", "--limit", "3", "--max-steps", "20", "--out", "datasets/policies")
    _, doc, _ = project.pianoset("sdf", *args)
    assert not doc["reused"] and doc["songs"] == 3 and doc["goals"] > 3
    assert (project.root / doc["sdf_dir"] / "sdf.json").is_file()
    _, again, _ = project.pianoset("sdf", *args)
    assert again["reused"] and again["sdf_dir"] == doc["sdf_dir"]
    code, _, stderr = project.pianoset("sdf", "--source", "no/such/folder", expect=2)
    assert "no/such/folder" in stderr


def test_chunks_and_evaluate(project):
    _, doc, _ = project.pianoset("chunks", "TwinkleTwinkleRousseau")
    assert doc["title"] and len(doc["chunks"]) >= 1 and doc["chunks"][0]["n_steps"] <= 550
    _, doc, _ = project.pianoset("evaluate", "CMajorScaleTwoHands", "--controller", "zero", "--max-chunks", "1")
    [chunk] = doc["chunks"]
    assert chunk["f1"] == 0.0 and chunk["n_steps"] > 0  # the zero action presses nothing
    code, _, stderr = project.pianoset("evaluate", "NoSuchSong", expect=2)
    assert "NoSuchSong" in stderr


def test_collect_stage_writes_shards(project):
    # `--plan` first: it runs nothing and says all of it would run
    _, plan, _ = project.pianoset("collect", "--plan", "--params", "params.yaml")
    assert plan["totals"]["chunks"] == 1 and plan["totals"]["episodes"] == N_ROLLOUTS
    assert plan["totals"]["tasks"]["write"] == {"run": 1, "reuse": 0} and plan["estimate"]["cpu_hours"] > 0
    assert not (project.root / "datasets/shards").exists() or not any((project.root / "datasets/shards").iterdir())
    project.dvc("repro", "collect")
    shards = [p for p in (project.root / "datasets/shards").iterdir() if not p.name.startswith(".")]
    assert len(shards) == 1
    manifest = json.loads((shards[0] / "manifest.json").read_text())
    assert manifest["n_episodes"] == N_ROLLOUTS  # one chunk, 4 rollouts
    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    assert {"collect", "catalog@robopianist"} <= set(lock["stages"])
    # `pianoset collect --params params.yaml` again is a resume with nothing to do
    code, doc, _ = project.pianoset("collect", "--params", "params.yaml")
    assert doc["tasks_run"] == {"train": 0, "rollout": 0, "write": 0} and doc["counts"]["cached"] == 1
    _, plan, _ = project.pianoset("collect", "--plan", "--params", "params.yaml")
    assert plan["totals"]["tasks"]["write"] == {"run": 0, "reuse": 1} and plan["estimate"]["disk_bytes_new"] == 0


def test_status(project):
    _, doc, _ = project.pianoset("status", "--params", "params.yaml")
    [song] = doc["songs"]
    assert song["status"] == "cached" and song["episodes"] == N_ROLLOUTS


def test_export_lerobot(project):
    [song_dir] = [p for p in (project.root / "datasets/shards").iterdir() if not p.name.startswith(".")]
    _, doc, _ = project.pianoset("export", "--format", "lerobot", "out/lerobot", "--songs", song_dir.name)
    info = json.loads((project.root / "out/lerobot/meta/info.json").read_text())
    assert doc["episodes"] == info["total_episodes"] == N_ROLLOUTS and info["fps"] == 20
    assert list((project.root / "out/lerobot/data").glob("chunk-000/file-*.parquet"))
    code, _, stderr = project.pianoset("export", "--format", "hdf5", "out/x", expect=2)
    assert "hdf5" in stderr


def test_stats_stage(project):
    project.dvc("repro", "stats")
    stats = json.loads((project.root / "datasets/reports/stats/stats.json").read_text())
    assert (stats["n_songs"], stats["n_chunks"], stats["n_episodes"]) == (1, 1, N_ROLLOUTS)
    _, doc, _ = project.pianoset("stats", "--params", "params.yaml")
    assert {Path(f).name for f in doc["files"]} >= {"stats.json", "f1_histogram.png"}


def test_render_specialist_and_stored_episode(project):
    [chunk_dir] = [p for p in (project.root / "work").glob("*/*") if (p / "specialist" / "specialist.json").exists()]
    _, doc, _ = project.pianoset("render", "--specialist", str(chunk_dir / "specialist"), "--out", "play.mp4",
                                 "--width", "64", "--height", "48")
    assert doc["frames"] > 1 and (project.root / "play.mp4").stat().st_size > 0
    [song_dir] = [p for p in (project.root / "datasets/shards").iterdir() if not p.name.startswith(".")]
    chunk_file = next((project.root / "work" / song_dir.name).glob("chunk-*.json"))
    _, doc, _ = project.pianoset("render", "--episode", str(song_dir), "--index", "1", "--chunk", str(chunk_file),
                                 "--out", "episode.mp4", "--width", "64", "--height", "48")
    n_steps = json.loads(chunk_file.read_text())["n_steps"]
    assert doc["rollout_seed"] == 1 and doc["frames"] == n_steps + 1 and 0.0 <= doc["stored_f1"] <= 1.0


def test_benchmark_stage_trains_and_scores_all_six_default_methods(project):
    project.dvc("repro", "benchmark", timeout=1500)
    table = (project.root / "datasets/reports/benchmark/table.csv").read_text()
    for method in TINY_METHODS:
        assert method["label"] in table
    _, doc, _ = project.pianoset("benchmark", "--params", "params.yaml")  # rerun: everything cached
    assert doc["tasks_run"] == {"train": 0, "evaluate": 0}
    [row] = doc["table"]["rows"]
    assert all(cell is not None and 0.0 <= cell["f1"] <= 1.0 for cell in row["cells"].values())
    assert len(row["cells"]) == 6


def test_publish_then_pull_into_a_fresh_clone(project, tmp_path):
    subprocess.run(["git", "add", "params.yaml", "tiny.mid"], cwd=project.root, check=True)
    subprocess.run(["git", "commit", "-qm", "tiny collection"], cwd=project.root, check=True, env=project.env)
    _, doc, _ = project.pianoset("publish", "--tag", "v1")
    assert doc["tag"] == "v1" and doc["files_pushed"] > 0
    [song_dir] = [p for p in (project.root / "datasets/shards").iterdir() if not p.name.startswith(".")]
    other = Project(fresh_clone(project.root, tmp_path / "other"), tmp_path)
    other.env = project.env  # the same DVC remote
    _, doc, _ = other.pianoset("pull", "--rev", "v1", "--songs", song_dir.name)
    [pulled] = doc["songs"]
    manifest = json.loads((Path(pulled) / "manifest.json").read_text())
    assert manifest["n_episodes"] == N_ROLLOUTS
