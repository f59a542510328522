"""benchmarks/quality_kinds.py: the registration point and the evaluation of a kind outside the pipeline."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks import quality_kinds
from benchmarks.quality_kinds import Fitted, KindJob, evaluate, pipeline_fit, register_kind
from benchmarks.quality_set import QualityChunk, load_chunk
from envs.piano.config import EnvConfig
from envs.piano.metrics import key_press_metrics
from envs.piano.trace import replay_actions

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_kinds_are_registered_and_bad_sources_refused():
    assert {"ik", "residual", "droq"} <= set(quality_kinds.KINDS)
    with pytest.raises(ValueError, match="noise_free='replay'"):
        pipeline_fit("mpc", noise_free="replay")


def test_a_registered_kind_outside_the_pipeline_is_evaluated(tmp_path, monkeypatch):
    monkeypatch.setattr(quality_kinds, "KINDS", dict(quality_kinds.KINDS))
    chunk = load_chunk(QualityChunk("robopianist:CMajorScaleTwoHands", 0, "dev"), tmp_path, max_steps=15)
    config = EnvConfig(physics_timestep=0.005)
    still = np.zeros((chunk.n_steps, 39))

    def fit(job: KindJob) -> Fitted:  # hands held still: nothing is played, every note is missed
        trace = replay_actions(job.chunk, job.env_config, still)
        metrics = key_press_metrics(trace.goal, trace.pressed).as_dict()
        episode = {"seed": 0, "actions": still, "pressed": trace.pressed, **metrics}
        return Fitted(fit_cpu_s=0.0, noise_free_actions=still, noise_free_metrics=metrics, episodes=[episode])

    register_kind("still", fit)
    result, arrays = evaluate(KindJob("still", chunk, tmp_path / "work", config, None, n_rollouts=1))
    assert result["kind"] == "still" and result["steps"] == 15 and result["physics_timestep"] == 0.005
    assert result["stored"]["n"] == 1 and result["stored"]["per_seed"][0]["replay_pressed_agreement"] == 1.0
    failures = result["failures"]["noise_free"]
    assert failures["n_notes"] > 0 and failures["n_missed"] == failures["n_notes"]
    assert sum(failures["causes"].values()) == failures["n_missed"]
    assert result["noise_free"]["recall"] == 0.0 and result["cpu_s"]["rollouts"] == 0.0
    assert arrays["actions"].shape == (15, 39) and arrays["pressed"].shape == (15, 88)
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        evaluate(KindJob("nope", chunk, tmp_path, config, None, n_rollouts=1))
