"""benchmarks/specialist_quality.py end to end: one short chunk, the ik kind, run twice (resume)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.quality_report import plot_distribution, render_report, summary
from benchmarks.quality_set import load_quality_set, select

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "specialist_quality.py"
CHUNK = "robopianist:CMajorScaleTwoHands:0"


def run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa",
           "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, str(SCRIPT), "--params", str(ROOT / "params.yaml"), "--kind", "ik",
               "--max-steps", "20", "--rollouts", "2", "--work", str(tmp_path / "work"), "--out",
               str(tmp_path / "out"), "--json", str(tmp_path / "all.json"), *extra]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_one_chunk_end_to_end_then_resumed(tmp_path):
    first = run(tmp_path, "--chunks", CHUNK)
    assert first.returncode == 0, first.stderr[-3000:]
    payload = json.loads((tmp_path / "all.json").read_text())
    assert payload["computed"] == [f"{CHUNK} ik"] and payload["reused"] == []
    (result,) = payload["results"]
    assert result["set"] == "dev" and result["steps"] == 20 and result["physics_timestep"] == 0.005  # the EnvConfig default
    stored = result["stored"]
    assert stored["n"] == 2 and [s["seed"] for s in stored["per_seed"]] == [0, 1]
    assert 0.0 <= stored["f1"] <= 1.0 and 0.0 <= result["noise_free"]["f1"] <= 1.0
    # The replayed stored actions give the stored episode, the replayed nominal the ik's own evaluation.
    assert all(s["replay_f1"] == pytest.approx(s["f1"], abs=1e-3) for s in stored["per_seed"])
    assert result["noise_free"]["f1"] == pytest.approx(result["noise_free"]["kind_reported_f1"], abs=1e-4)
    assert result["cpu_s"]["fit"] > 0
    for run_name in ("noise_free", "stored"):
        failures = result["failures"][run_name]
        assert sum(failures["causes"].values()) == failures["n_missed"] <= failures["n_notes"]
        assert failures["n_notes"] > 0
    assert sum(result["failures"]["noise_free"]["other_detail"].values()) == \
        result["failures"]["noise_free"]["causes"]["other"]
    result_file = tmp_path / "out" / "results" / "ik" / "dt0.005-max20" / "CMajorScaleTwoHands-0.json"
    assert json.loads(result_file.read_text())["key"] == result["key"]
    assert result_file.with_suffix(".npz").exists()
    assert "| ik | 0.005 | dev | 1 |" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "f1_distribution.png").stat().st_size > 0
    stamp = result_file.stat().st_mtime_ns

    second = run(tmp_path, "--chunks", CHUNK)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "all.json").read_text())
    assert again["computed"] == [] and again["reused"] == [f"{CHUNK} ik"]
    assert "reused   ik" in second.stdout and "computed" not in second.stdout.split("# Specialist")[0]
    assert result_file.stat().st_mtime_ns == stamp  # not rewritten
    assert again["results"] == payload["results"]

    # Two timesteps of one kind are two variants: their own tables, summary rows and plot columns.
    other = {**result, "physics_timestep": 0.002, "stored": {**stored, "f1": 0.9}}
    report = render_report([result, other], select(load_quality_set(ROOT / "params.yaml")[0], "all", [CHUNK]),
                           ["ik"], [0.002, 0.005], 2)
    assert "## ik @ 0.002 s: per chunk" in report and "## ik @ 0.005 s: per chunk" in report
    assert "| ik | 0.002 | dev | 1 | 0.900 | 100% |" in report
    rows = summary([result, other])
    assert sorted((r["physics_timestep"], r["median_f1_stored"]) for r in rows) == [(0.002, 0.9), (0.005, stored["f1"])]
    plot_distribution([result, other], ["ik"], tmp_path / "two.png")
    assert (tmp_path / "two.png").stat().st_size > 0


def test_reserved_pieces_and_bad_kinds_are_refused(tmp_path):
    reserved = run(tmp_path, "--chunks", "music21:mozart/k545/movement1_exposition.mxl:0")
    assert reserved.returncode != 0 and "reserved for the independent evaluation" in reserved.stderr
    bad = run(tmp_path, "--chunks", CHUNK, "--kind", "nope")
    assert bad.returncode != 0 and "unknown ['nope']" in bad.stderr
    dt = run(tmp_path, "--chunks", CHUNK, "--physics-timestep", "0.002,fast")
    assert dt.returncode != 0 and "--physics-timestep '0.002,fast'" in dt.stderr
