"""The benchmark flow for real: a tiny collection played in the real env, `pianoset
benchmark` under a real (ephemeral) Prefect server, BC trained and evaluated on three
groups, the table recomputed from the saved episodes, a no-op rerun, and a config
change that retrains only its own method."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from envs.music.chunks import chunk_path, make_chunks, save_chunk
from envs.music.songs import load_song
from envs.piano.config import EnvConfig
from envs.piano.env import make_env
from envs.piano.metrics import key_press_metrics
from envs.piano.spec import OBSERVATION_KEYS
from tasks.params import ParamsError, validate_params
from tasks.rlds import Episode, write_song_dataset

TRAIN_SONGS = ("robopianist:CMajorScaleTwoHands", "robopianist:TwinkleTwinkleRousseau")
EPISODE_STEPS = 30
SMALL_BC = {"hidden_dims": [32, 32], "batch_size": 16}


def _scripted_episodes(ref: str, root: Path, n_episodes: int = 2) -> list[Episode]:
    """A song's first chunk, cut to EPISODE_STEPS, played by a smooth scripted
    controller in the real env; the chunk file goes where the collection keeps it."""
    song = load_song(ref)
    chunk = replace(make_chunks(song)[0], n_steps=EPISODE_STEPS)
    save_chunk(chunk, chunk_path(root / "work", song.song_id, chunk.index))
    env = make_env(chunk, EnvConfig())
    spec = env.action_spec()
    mid, half = (spec.maximum + spec.minimum) / 2, (spec.maximum - spec.minimum) / 2
    episodes = []
    for seed in range(n_episodes):
        rng = np.random.default_rng(seed)
        timestep = env.reset()
        steps, goal = [], []
        for t in range(EPISODE_STEPS):
            wave = np.sin(0.2 * t + np.arange(len(mid)) + seed) + 0.15 * rng.standard_normal(len(mid))
            action = (mid + 0.3 * half * wave).astype(np.float32)
            obs = timestep.observation
            timestep = env.step(action)
            info = env.step_info()
            terms = info["reward_terms"]
            steps.append({
                "observation": {k: obs[k] for k in OBSERVATION_KEYS}, "action": action, "reward": timestep.reward,
                "discount": timestep.discount, "is_first": t == 0, "is_last": t == EPISODE_STEPS - 1,
                "is_terminal": False, "ot_key_for_finger": info["ot_key_for_finger"],
                "pressed_keys": info["pressed_keys"], "sustain_pressed": info["sustain_pressed"],
                "reward_fingering": terms["ot"], "reward_mimic": 0.0, "reward_press": terms["press"], "reward_sustain": terms["sustain"],
                "reward_collision": terms["collision"], "reward_energy": terms["energy"],
            })
            goal.append(info["goal_keys"])
        metrics = key_press_metrics(np.array(goal), np.array([s["pressed_keys"] for s in steps]))
        episodes.append(Episode.from_steps(steps, {
            "song_id": song.song_id, "chunk_id": chunk.chunk_id, "chunk_index": chunk.index, "rollout_seed": seed,
            "specialist_id": "scripted", "fingering_mode": "ot", **metrics.as_dict()}))
    return episodes


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Two songs x 2 episodes x EPISODE_STEPS steps in <root>/shards, their chunk files in <root>/work."""
    root = tmp_path_factory.mktemp("bench")
    for ref in TRAIN_SONGS:
        episodes = _scripted_episodes(ref, root)
        write_song_dataset(root / "shards", episodes[0].metadata["song_id"], episodes)
    return root


def _params(root: Path, methods: list[dict], **benchmark) -> Path:
    section = {
        "shards_dir": "shards", "work_dir": "work", "specialists_dir": "specialists",
        "policies_dir": "policies", "reports_dir": "reports", "steps": 30, "methods": methods,
        "groups": {"in_distribution": {"limit": 2},
                   "easy_ood": {"songs": ["robopianist:CMajorChordProgressionTwoHands"]},
                   "hard_ood": {"songs": ["robopianist:NocturneRousseau"]}},
        "eval": {"max_chunks_per_song": 1, "max_steps": EPISODE_STEPS, "lanes": 4},
        **benchmark,
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"collect": {"songs": list(TRAIN_SONGS)}, "benchmark": section}))
    return path


@pytest.fixture(scope="module")
def cli(collection):
    """`pianoset benchmark --params params.yaml --json` in this process (cwd = the tiny
    project) against a temporary Prefect server; returns (exit code, summary)."""
    import contextlib
    import io

    import typer
    from prefect.testing.utilities import prefect_test_harness

    from flows.cli import app

    command = typer.main.get_command(app)
    previous = Path.cwd()
    os.chdir(collection)
    try:
        with prefect_test_harness(server_startup_timeout=180):
            def run(*extra: str):
                # Not typer's CliRunner: it swaps and closes sys.stderr, which Prefect's
                # log handlers keep writing to. Only stdout (the JSON) is captured.
                stdout = io.StringIO()
                with contextlib.redirect_stdout(stdout):
                    code = command.main(["benchmark", "--params", "params.yaml", "--json", *extra],
                                        prog_name="pianoset", standalone_mode=False)
                text = stdout.getvalue()
                start = text.find("{\n")
                assert start >= 0, f"exit {code}: {text[-3000:]}"
                return code, json.loads(text[start:])

            yield run
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def first_run(collection, cli):
    _params(collection, [{"label": "BC a", "policy": "bc", "config": SMALL_BC},
                         {"label": "BC b", "policy": "bc", "config": {**SMALL_BC, "hidden_dims": [64]}}])
    return cli()


def _record_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted((root / "reports" / "episodes").rglob("*"))
            if p.is_file()}


def test_first_run_trains_evaluates_and_writes_the_table(collection, first_run):
    code, summary = first_run
    assert code == 0, summary
    assert summary["tasks_run"] == {"train": 2, "evaluate": 6}
    assert summary["tasks_reused"] == {"train": 0, "evaluate": 0}
    reports = collection / "reports"
    for name in ("table.md", "table.csv", "bars.png", "plan.json"):
        assert (reports / name).is_file(), name
    assert (reports / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for policy in summary["policies"]:
        meta = json.loads((collection / "policies" / policy["policy_key"] / "policy.json").read_text())
        assert meta["policy_key"] == policy["policy_key"] and meta["steps"] == 30
        assert meta["train_songs"] == sorted(p.name for p in (collection / "shards").iterdir())
        assert meta["history"] and np.isfinite(meta["final_loss"])

    # Every episode's P/R/F1 equals the metrics of its stored per-step key arrays.
    from tasks.policy_eval import load_key_arrays, read_records

    episodes_by_cell = {}
    for cell in summary["evaluations"]:
        path = reports / cell["records"]
        doc = read_records(path)
        assert doc["key"] == cell["key"] and doc["group"] == cell["group"]
        arrays = load_key_arrays(path)
        assert len(arrays) == len(doc["episodes"]) > 0
        for row, (goal, pressed) in zip(doc["episodes"], arrays):
            assert row["steps"] == len(goal) == EPISODE_STEPS
            metrics = key_press_metrics(goal, pressed)
            assert (row["precision"], row["recall"], row["f1"]) == (metrics.precision, metrics.recall, metrics.f1)
        episodes_by_cell[(cell["group"], cell["method"])] = doc["episodes"]
    groups = {g: {r["song_id"] for r in episodes_by_cell[(g, "BC a")]} for g in ("in_distribution", "easy_ood", "hard_ood")}
    assert groups["in_distribution"] == {p.name for p in (collection / "shards").iterdir()}
    assert groups["easy_ood"] == {load_song("robopianist:CMajorChordProgressionTwoHands").song_id}
    assert not groups["hard_ood"] & groups["in_distribution"]
    # The goal keys are the songs', whichever policy played them.
    assert any(row["f1"] < 1 for rows in episodes_by_cell.values() for row in rows)

    # The table (JSON, CSV and markdown) is the mean over each cell's saved episodes.
    import csv

    table = summary["table"]
    with open(reports / "table.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r["group"] for r in csv_rows] == ["in_distribution", "easy_ood", "hard_ood"]
    markdown = (reports / "table.md").read_text()
    for row, csv_row in zip(table["rows"], csv_rows):
        assert row["train_songs"] == int(csv_row["train_songs"]) == 2
        for method in ("BC a", "BC b"):
            rows = episodes_by_cell[(row["group"], method)]
            for metric in ("f1", "precision", "recall"):
                expected = float(np.mean([r[metric] for r in rows]))
                assert row["cells"][method][metric] == pytest.approx(expected, abs=1e-12)
                assert float(csv_row[f"{method} {metric}"]) == pytest.approx(expected, abs=1e-12)
        line = next(l for l in markdown.splitlines() if l.startswith(f"| {row['title']} | 2 |"))
        assert [f"{row['cells'][m]['f1']:.3f}" for m in ("BC a", "BC b")] == [c.strip() for c in line.split("|")[-3:-1]]


def test_rerun_is_a_no_op(collection, first_run, cli):
    before = _record_files(collection)
    policy_files = {p: p.stat().st_mtime_ns for p in (collection / "policies").rglob("*") if p.is_file()}
    code, summary = cli()
    assert code == 0
    assert summary["tasks_run"] == {"train": 0, "evaluate": 0}
    assert summary["tasks_reused"] == {"train": 2, "evaluate": 6}
    assert _record_files(collection) == before
    assert {p: p.stat().st_mtime_ns for p in (collection / "policies").rglob("*") if p.is_file()} == policy_files
    assert summary["table"] == first_run[1]["table"]


def test_changed_method_retrains_only_itself_and_a_broken_one_fails_alone(collection, first_run, cli):
    before = _record_files(collection)
    old_keys = {p["method"]: p["policy_key"] for p in first_run[1]["policies"]}
    _params(collection, [{"label": "BC a", "policy": "bc", "config": SMALL_BC},
                         {"label": "BC b", "policy": "bc", "config": {**SMALL_BC, "hidden_dims": [48]}},
                         {"label": "broken", "policy": "no-such-policy"},
                         {"label": "diverging", "policy": "bc", "config": {**SMALL_BC, "learning_rate": 1e30}}])
    code, summary = cli()
    assert code == 3  # partial: the broken methods failed, the others are done
    assert summary["tasks_run"] == {"train": 2, "evaluate": 3}  # diverging's evaluations never ran
    assert summary["tasks_reused"] == {"train": 1, "evaluate": 3}
    policies = {p["method"]: p for p in summary["policies"]}
    assert policies["BC a"]["policy_key"] == old_keys["BC a"] and policies["BC a"]["status"] == "cached"
    assert policies["BC b"]["policy_key"] != old_keys["BC b"] and policies["BC b"]["status"] == "done"
    assert policies["broken"]["status"] == "failed" and "no-such-policy" in policies["broken"]["error"]
    assert policies["diverging"]["status"] == "failed" and policies["diverging"]["stage"] == "train"
    assert "FloatingPointError" in policies["diverging"]["error"]
    assert {c["status"] for c in summary["evaluations"] if c["method"] == "diverging"} == {"skipped"}
    assert summary["failed"] == {"train": 2, "evaluate": 3}
    # BC a's records were not touched; the table shows "—" for the broken method.
    after = _record_files(collection)
    assert {k: v for k, v in after.items() if old_keys["BC a"] in k} == \
           {k: v for k, v in before.items() if old_keys["BC a"] in k}
    assert all(row["cells"]["broken"] is None and row["cells"]["diverging"] is None for row in summary["table"]["rows"])
    assert all(row["cells"]["BC b"] is not None for row in summary["table"]["rows"])
    assert "| — |" in (collection / "reports" / "table.md").read_text()


def test_cli_refuses_an_ood_song_that_is_trained_on(collection, first_run, cli):
    import contextlib
    import io

    import typer

    from flows.cli import app

    song_id = load_song(TRAIN_SONGS[0]).song_id
    path = _params(collection, [{"label": "BC a", "policy": "bc", "config": SMALL_BC}])
    params = yaml.safe_load(path.read_text())
    params["benchmark"]["groups"]["easy_ood"]["songs"].append(TRAIN_SONGS[0])
    other = collection / "params-ood.yaml"
    other.write_text(yaml.safe_dump(params))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = typer.main.get_command(app).main(["benchmark", "--params", str(other), "--json"],
                                                prog_name="pianoset", standalone_mode=False)
    assert code == 2
    assert f"benchmark.groups.easy_ood: {TRAIN_SONGS[0]} (song {song_id}) is in the training set" in \
        " ".join(stderr.getvalue().split())


def test_table_is_rebuilt_from_the_saved_episodes_alone(collection, first_run):
    from tasks.benchmark import build_table, write_reports

    table_csv = (collection / "reports" / "table.csv").read_text()
    (collection / "reports" / "table.csv").unlink()
    write_reports(collection / "reports")
    assert (collection / "reports" / "table.csv").read_text() == table_csv
    # A tampered episode record is refused, not averaged.
    plan = json.loads((collection / "reports" / "plan.json").read_text())
    cell = next(c for c in plan["cells"] if c["group"] == "easy_ood")  # a record the table is made of
    record = collection / "reports" / cell["records"]
    doc = json.loads(record.read_text())
    original = record.read_text()
    doc["episodes"][0]["f1"] = 0.999
    record.write_text(json.dumps(doc))
    try:
        with pytest.raises(ValueError, match="stores f1=0.999 but its key arrays give"):
            build_table(collection / "reports")
    finally:
        record.write_text(original)


# ----------------------------------------------------------------------------- planning errors


def _config(root: Path, **changes):
    from tasks.benchmark import BenchmarkConfig, GroupSpec, Method
    from tasks.policy_eval import EvalConfig

    base = BenchmarkConfig(shards_dir=str(root / "shards"), work_dir=str(root / "work"),
                           specialists_dir=str(root / "specialists"), methods=(Method("BC", "bc"),),
                           in_distribution=GroupSpec(limit=2), eval=EvalConfig(max_chunks_per_song=1))
    return replace(base, **changes)


def test_plan_refuses_an_ood_song_that_is_trained_on(collection):
    from tasks.benchmark import BenchmarkError, GroupSpec, plan_benchmark

    config = _config(collection, hard_ood=GroupSpec(songs=("robopianist:NocturneRousseau", TRAIN_SONGS[1])))
    song_id = load_song(TRAIN_SONGS[1]).song_id
    with pytest.raises(BenchmarkError, match=re.escape(
            f"benchmark.groups.hard_ood: {TRAIN_SONGS[1]} (song {song_id}) is in the training set")):
        plan_benchmark(config)


def test_plan_training_sets_and_group_errors(collection):
    from tasks.benchmark import BenchmarkError, GroupSpec, plan_benchmark, select_training_sets

    song_ids = sorted(p.name for p in (collection / "shards").iterdir())
    sets = select_training_sets(_config(collection, train_sizes=(2, 1)))
    assert [[d.name for d in s] for s in sets] == [song_ids[:1], song_ids]
    with pytest.raises(BenchmarkError, match="train_sizes: 3 songs asked, but .* has only 2"):
        select_training_sets(_config(collection, train_sizes=(3,)))
    with pytest.raises(BenchmarkError, match="train_songs: nope has no complete song folder"):
        select_training_sets(_config(collection, train_songs=("nope",)))
    # An in-distribution song must be in every training set (here: not in the 1-song set).
    with pytest.raises(BenchmarkError, match=f"{song_ids[1]} .* is not in the training set of 1 songs"):
        plan_benchmark(_config(collection, train_sizes=(1, 2), in_distribution=GroupSpec(songs=(song_ids[1],))))
    plan = plan_benchmark(_config(collection, train_sizes=(1, 2), in_distribution=GroupSpec(songs=(song_ids[0],))))
    assert [i["song_id"] for i in plan["groups"]["in_distribution"]] == [song_ids[0]]
    assert plan["groups"]["in_distribution"][0]["n_steps"] == EPISODE_STEPS  # the collection's (cut) chunk


@pytest.mark.parametrize("benchmark, message", [
    ({"train_sizes": [50, 0]}, "benchmark.train_sizes[1] = 0, expected an integer >= 1"),
    ({"methods": [{"label": "BC", "policy": "bc"}, {"label": "BC", "policy": "ibc"}]},
     "benchmark.methods[1].label = 'BC', expected a label no other method has"),
    ({"methods": [{"label": "BC", "policy": "bc", "confg": {}}]}, "unknown key 'benchmark.methods[0].confg'"),
    ({"groups": {"hard_ood": {"songs": "music21:x"}}}, "benchmark.groups.hard_ood.songs = 'music21:x'"),
    ({"groups": {"medium": {}}}, "unknown key 'benchmark.groups.medium'"),
    ({"eval": {"lanes": 0}}, "benchmark.eval.lanes = 0, expected an integer >= 1"),
    ({"reports_dir": "/tmp/out"}, "benchmark.reports_dir = '/tmp/out', expected a relative path"),
])
def test_params_errors_name_the_key(benchmark, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_params({"collect": {"songs": ["x"]}, "benchmark": benchmark}, source="p.yaml")


def test_project_params_give_rp1m_columns_and_disjoint_groups():
    from tasks.benchmark import RP1M_METHODS, BenchmarkConfig
    from tasks.params import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    config = BenchmarkConfig.from_params(params["benchmark"])
    assert [(m.label, m.policy, dict(m.config)) for m in config.methods] == \
           [(m.label, m.policy, dict(m.config)) for m in RP1M_METHODS]
    collected = {load_song(ref).song_id for ref in params["collect"]["songs"]}
    easy = {load_song(ref).song_id for ref in config.easy_ood.songs}
    assert easy and not easy & collected  # the default easy OOD songs are not the default collection's


TINY_DIFFUSION = {"down_dims": [16, 32], "n_groups": 4, "diffusion_step_embed_dim": 16, "num_train_timesteps": 20,
                  "num_inference_steps": 4, "warmup_steps": 0, "batch_size": 16}
TINY_IBC = {"hidden_dims": [32, 32], "num_counter_examples": 16, "inference_samples": 64, "inference_iterations": 2,
            "lr_warmup_steps": 0, "batch_size": 16}


@pytest.mark.slow
def test_diffusion_and_ibc_through_the_flow(collection, first_run, cli):
    """Policies with an observation history (To = 2) and a horizon that starts in
    the past (action_offset = -1) train, play and are scored like BC."""
    from tasks.policy_eval import recompute_episodes

    _params(collection, [{"label": "BC a", "policy": "bc", "config": SMALL_BC},
                         {"label": "DP", "policy": "diffusion", "config": TINY_DIFFUSION},
                         {"label": "IBC", "policy": "ibc", "config": TINY_IBC}])
    code, summary = cli()
    assert code == 0, [p.get("error") for p in summary["policies"]]
    assert summary["tasks_run"] == {"train": 2, "evaluate": 6}
    for cell in summary["evaluations"]:
        if cell["method"] in ("DP", "IBC"):
            rows = recompute_episodes(collection / "reports" / cell["records"])
            assert rows and all(r["steps"] == EPISODE_STEPS for r in rows)
    assert all(row["cells"][m] is not None for row in summary["table"]["rows"] for m in ("DP", "IBC"))


# PianoMime's two-stage policies (one U-Net level, few diffusion steps) and flow matching, tiny.
TINY_PIANOMIME = {"down_dims": [16], "n_groups": 4, "kernel_size": 3, "diffusion_step_embed_dim": 16,
                  "tcn_channels": [8], "num_train_timesteps": 20, "high_inference_steps": 4,
                  "low_inference_steps": 4, "batch_size": 16, "sdf_max_steps": 20}
TINY_FLOW = {"down_dims": [16], "n_groups": 4, "kernel_size": 3, "diffusion_step_embed_dim": 16,
             "num_inference_steps": 4, "warmup_steps": 0, "batch_size": 16}
GENERALISTS = [{"label": "Two-stage Diff", "policy": "pianomime", "config": TINY_PIANOMIME},
               {"label": "Two-stage Diff-res", "policy": "pianomime",
                "config": {**TINY_PIANOMIME, "low_level": "residual"}},
               {"label": "Flow Matching", "policy": "flow_matching", "config": TINY_FLOW}]


def _generalists_through_the_flow(collection, cli, methods, **benchmark):
    from tasks.policy_eval import recompute_episodes

    _params(collection, [{"label": "BC a", "policy": "bc", "config": SMALL_BC}, *methods], **benchmark)
    code, summary = cli()
    assert code == 0, [p.get("error") for p in summary["policies"]]
    labels = [m["label"] for m in methods]
    assert summary["tasks_run"] == {"train": len(methods), "evaluate": 3 * len(methods)}
    assert summary["tasks_reused"] == {"train": 1, "evaluate": 3}  # BC a: the same shards, the same groups
    for cell in summary["evaluations"]:
        rows = recompute_episodes(collection / "reports" / cell["records"])
        assert rows and all(r["steps"] == EPISODE_STEPS for r in rows)
    assert all(row["cells"][m] is not None for row in summary["table"]["rows"] for m in labels)
    header = next(l for l in (collection / "reports" / "table.md").read_text().splitlines() if "BC a" in l)
    assert all(label in header for label in labels)  # columns of the same Table-2 report
    return summary


def test_pianomime_and_flow_matching_through_the_flow(collection, first_run, cli):
    """PianoMime's Two-stage Diff and Diff-res (goal autoencoder, fingertips, IK residual) and the
    flow-matching policy train on the same shards and are scored on the same groups as BC; both
    PianoMime methods take the one goal autoencoder pre-trained on `sdf_sources`' songs."""
    summary = _generalists_through_the_flow(collection, cli, GENERALISTS, sdf_sources=["robopianist"],
                                            sdf_limit=4, sdf_max_steps=20)
    residual = next(p for p in summary["policies"] if p["method"] == "Two-stage Diff-res")
    meta = json.loads((collection / "policies" / residual["policy_key"] / "policy.json").read_text())
    assert meta["method"]["config"]["low_level"] == "residual" and meta["steps"] == 30
    sdf_dirs = {json.loads((collection / "policies" / p["policy_key"] / "policy.json").read_text())
                ["method"]["config"].get("sdf_dir") for p in summary["policies"] if p["method"].startswith("Two-stage")}
    assert len(sdf_dirs) == 1
    sdf = json.loads((collection / next(iter(sdf_dirs)) / "sdf.json").read_text())
    assert sdf["songs"] == 4 and sdf["sources"] == ["robopianist"] and sdf["max_steps"] == 20


@pytest.mark.slow
def test_pianomime_ablations_through_the_flow(collection, first_run, cli):
    _generalists_through_the_flow(collection, cli, [
        {"label": "w/o SDF", "policy": "pianomime", "config": {**TINY_PIANOMIME, "goal_encoding": "binary"}},
        {"label": "One-stage Diff", "policy": "pianomime", "config": {**TINY_PIANOMIME, "stages": 1}},
        {"label": "Two-stage BeT", "policy": "pianomime",
         "config": {**TINY_PIANOMIME, "generator": "bet", "bet_bins": 8, "bet_layers": 1, "bet_heads": 2,
                    "bet_embed_dim": 16}}])


def test_sigterm_stops_the_benchmark_cleanly_then_a_rerun_completes(collection, tmp_path):
    """`pianoset benchmark` signalled while a policy trains: exit 143 within 15 s, no process of the
    run left (its temporary Prefect server included), and the same command then finishes."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from tests.flows.test_collect import assert_nothing_left

    root = tmp_path / "project"
    shutil.copytree(collection / "shards", root / "shards")
    shutil.copytree(collection / "work", root / "work")
    _params(root, [{"label": "BC long", "policy": "bc", "config": SMALL_BC}], steps=3000)
    env = {**os.environ, "MUJOCO_GL": "osmesa", "PREFECT_HOME": str(root / "prefect"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "flows.cli", "benchmark", "--params", "params.yaml", "--json"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not (root / "reports" / "plan.json").exists():
        time.sleep(0.05)
    time.sleep(0.5)  # into the training (any time inside the run stops it the same way)
    assert proc.poll() is None, "the benchmark finished before it could be signalled"
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert code == 128 + signal.SIGTERM and time.time() - sent < 15
    assert_nothing_left(proc.pid)
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BC long" in (root / "reports" / "table.csv").read_text()
