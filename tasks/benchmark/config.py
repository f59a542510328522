"""The benchmark's configuration: methods, evaluation groups, budgets (RP1M Table 2, Tables 5-8)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from envs import atomic
from envs.piano.config import EnvConfig
from tasks.policy_eval import (
    EvalConfig,
)

log = logging.getLogger(__name__)


BENCHMARK_VERSION = "benchmark-1"  # bump when a change alters trained policies
PLAN_FORMAT = "pianoset-benchmark-plan/1"
GROUPS = ("in_distribution", "easy_ood", "hard_ood")
GROUP_TITLES = {"in_distribution": "In-Dist.", "easy_ood": "Easy OOD", "hard_ood": "Hard OOD"}  # RP1M Table 2

# Training steps per policy for each budget. RP1M Tables 5-8: 1M steps for
# every method. `cpu` is tens of minutes per small policy on a 2-core machine
# (the 6 x 4096 BC is far slower there); `smoke` only exercises the code.
PROFILE_STEPS = {"smoke": 50, "cpu": 10_000, "paper": 1_000_000}
MODEL_SCALES = ("small", "paper")
# `model_scale: small` (the shipped default): what a method's config does not
# set itself is capped so that every method trains in a few GiB on a 2-core,
# 24 GiB machine. IBC at paper size scores batch 256 x (1 + 1024 counter
# examples) energies per step through a 4 x 1024 MLP, which held 17 GB of
# resident memory (RP1M Table 6 sizes stay one switch away: `model_scale: paper`).
SMALL_SCALE: dict[str, dict[str, Any]] = {
    "ibc": {"batch_size": 64, "num_counter_examples": 256, "inference_samples": 256},
    "diffusion": {"batch_size": 64},
    "flow_matching": {"batch_size": 64},
    "pianomime": {"batch_size": 64},
}


# Evaluation needs no reward; "none" skips the per-step OT matching. The
# observation and the key-press metrics do not depend on it.
EVAL_ENV = {"reward": {"fingering": "none"}}


class BenchmarkError(ValueError):
    """The benchmark cannot be planned as configured (the message names the input)."""


@dataclasses.dataclass(frozen=True)
class Method:
    """One column of the table: a registered policy and overrides of its config.

    Attributes:
      label: column name, unique ("BC (1024)").
      policy: registered policy name (`agents.common.policy.policy_registry`).
      config: fields of the policy's config class that differ from its
        defaults (lists become tuples).
    """

    label: str
    policy: str
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"label": self.label, "policy": self.policy, "config": dict(self.config)}


# RP1M Table 2 columns (Appendix B.1): BC with 3x256, 3x1024 and 6x4096 MLPs,
# IBC, BC-RNN and the CNN Diffusion Policy, each at its paper defaults.
RP1M_METHODS = (
    Method("BC (256)", "bc", {"hidden_dims": (256,) * 3}),
    Method("BC (1024)", "bc", {"hidden_dims": (1024,) * 3}),
    Method("BC (4096)", "bc", {"hidden_dims": (4096,) * 6}),
    Method("IBC", "ibc"),
    Method("BC-RNN", "bc_rnn"),
    Method("Diffusion Policy", "diffusion"),
)

# PianoMime's distilled generalists (PianoMime Table 1, App. I) and a flow-matching policy
# (RP1M++'s family): columns to add to `methods` (params.yaml lists them, commented out). Not in
# the default list: at PianoMime's sizes and step counts a decision costs 80 + 50 passes of a
# 256-512-1024 U-Net (App. H), against the Diffusion Policy's 10, and Diff-res adds IK solves;
# see benchmarks/reports/generalist.md for measured rates.
GENERALIST_METHODS = (
    Method("Two-stage Diff", "pianomime"),
    Method("Two-stage Diff-res", "pianomime", {"low_level": "residual"}),
    Method("Two-stage Diff w/o SDF", "pianomime", {"goal_encoding": "binary"}),
    Method("One-stage Diff", "pianomime", {"stages": 1}),
    Method("Two-stage BeT", "pianomime", {"generator": "bet"}),
    Method("Flow Matching", "flow_matching"),
)

# RP1M Table 2, for the report: {group: {train songs: {method: F1}}}.
RP1M_TABLE2 = {
    "in_distribution": {50: (0.086, 0.621, 0.200, 0.120, 0.174, 0.706),
                        150: (0.124, 0.245, 0.176, 0.088, 0.121, 0.578),
                        300: (0.084, 0.249, 0.102, 0.083, 0.025, 0.596)},
    "easy_ood": {50: (0.06, 0.278, 0.109, 0.128, 0.204, 0.446),
                 150: (0.085, 0.257, 0.172, 0.058, 0.050, 0.465),
                 300: (0.056, 0.236, 0.112, 0.056, 0.039, 0.486)},
    "hard_ood": {50: (0.141, 0.244, 0.217, 0.183, 0.221, 0.303),
                 150: (0.155, 0.275, 0.229, 0.148, 0.105, 0.432),
                 300: (0.145, 0.253, 0.181, 0.144, 0.081, 0.440)},
}


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """The songs of one evaluation group.

    Attributes:
      songs: song refs (`envs.music.songs.load_song`: "robopianist:NocturneRousseau",
        "music21:...", a MIDI path) or, for in_distribution, song ids of the
        collection (folder names).
      limit: in_distribution only, when `songs` is empty: the first N songs
        of the smallest training set (RP1M Table 9 lists 12).
    """

    songs: tuple[str, ...] = ()
    limit: int | None = None


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a benchmark run depends on (params.yaml `benchmark:`).

    Attributes:
      shards_dir: the collection: one complete song folder per song.
      train_songs: song ids (folder names) to train on, in this order; None:
        every complete folder, sorted by song id (a content hash, so the order
        is a fixed pseudo-random one).
      train_sizes: train one policy per method on each of the first N songs
        (RP1M: 50, 150, 300); None: one training set with all the songs.
      methods: the table's columns (default: RP1M Table 2's).
      profile: training budget, `PROFILE_STEPS`.
      steps: training steps per policy, overriding the profile's.
      seed: training seed of every policy.
      in_distribution, easy_ood, hard_ood: the evaluation groups; a group with
        no songs (and no limit) is skipped.
      eval: evaluation extent (`tasks.policy_eval.EvalConfig`).
      workers: tasks run at once (training and evaluation share the cores).
      work_dir: where out-of-distribution chunk files are written; the
        collection's `work_dir` (its `<song_id>/chunk-*.json`) is also where
        in-distribution chunks are looked up.
      specialists_dir: the collection's specialists (each holds the chunk.json
        it was trained on): the other place in-distribution chunks are found.
      policies_dir, reports_dir: outputs.
      env: EnvConfig fields of the evaluation env.
      model_scale: "paper" trains each method with its config as given (RP1M
        Tables 5-8 sizes unless overridden); "small" caps the sizes a method's
        config leaves at the paper values (`SMALL_SCALE`) to fit a small machine.
      sdf_sources: catalog sources ("robopianist", "music21", MIDI files or
        folders) whose songs' goals pre-train PianoMime's goal autoencoder once
        (`tasks.benchmark.sdf`, saved under `policies_dir` like a policy), given
        to every pianomime method with an SDF goal and no `sdf_dir` of its own.
        Empty: each such method trains it on its training songs' goals.
      sdf_max_steps: gradient steps of that pre-training (0: SDFConfig's epochs);
        sdf_limit: at most this many songs per source (None: all).
      catalog_dir: the catalog whose per-file cache the pre-training reads through.
    """

    shards_dir: str = "datasets/shards"
    train_songs: tuple[str, ...] | None = None
    train_sizes: tuple[int, ...] | None = None
    methods: tuple[Method, ...] = RP1M_METHODS
    profile: str = "smoke"
    steps: int | None = None
    seed: int = 0
    in_distribution: GroupSpec = GroupSpec(limit=12)
    easy_ood: GroupSpec = GroupSpec()
    hard_ood: GroupSpec = GroupSpec()
    eval: EvalConfig = EvalConfig()
    workers: int = 1
    work_dir: str = "work"
    specialists_dir: str = "datasets/specialists"
    policies_dir: str = "datasets/policies"
    reports_dir: str = "datasets/reports/benchmark"
    env: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(EVAL_ENV))
    model_scale: str = "paper"
    sdf_sources: tuple[str, ...] = ()
    sdf_max_steps: int = 0
    sdf_limit: int | None = None
    catalog_dir: str = "datasets/catalog"

    def __post_init__(self) -> None:
        if self.model_scale not in MODEL_SCALES:
            raise BenchmarkError(f"benchmark: model_scale={self.model_scale!r}, expected one of {list(MODEL_SCALES)}")
        if self.profile not in PROFILE_STEPS:
            raise BenchmarkError(f"benchmark: profile={self.profile!r}, expected one of {sorted(PROFILE_STEPS)}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise BenchmarkError(f"benchmark: steps={self.steps!r}, expected None or an integer >= 1")
        if not self.methods:
            raise BenchmarkError("benchmark: no methods selected")
        labels = [m.label for m in self.methods]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise BenchmarkError(f"benchmark: method labels {repeated} are used more than once")
        if self.train_sizes is not None:
            if not self.train_sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.train_sizes):
                raise BenchmarkError(f"benchmark: train_sizes={self.train_sizes!r}, expected integers >= 1")
        if self.workers < 1:
            raise BenchmarkError(f"benchmark: workers={self.workers}, expected >= 1")
        if isinstance(self.sdf_sources, str) or not all(isinstance(s, str) and s for s in self.sdf_sources):
            raise BenchmarkError(f"benchmark: sdf_sources={self.sdf_sources!r}, expected a list of catalog sources")
        for name, value, minimum in (("sdf_max_steps", self.sdf_max_steps, 0), ("sdf_limit", self.sdf_limit, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                raise BenchmarkError(f"benchmark: {name}={value!r}, expected an integer >= {minimum}")
        self.env_config()  # validates

    @property
    def train_steps(self) -> int:
        return self.steps or PROFILE_STEPS[self.profile]

    def env_config(self) -> EnvConfig:
        return EnvConfig.from_dict(dict(self.env))

    def group(self, name: str) -> GroupSpec:
        return getattr(self, name)

    def scaled_methods(self) -> tuple[Method, ...]:
        """The methods as they are trained: with `SMALL_SCALE` under each one's own config at
        `model_scale: small`."""
        if self.model_scale == "paper":
            return self.methods
        return tuple(dataclasses.replace(m, config={**SMALL_SCALE.get(m.policy, {}), **dict(m.config)})
                     for m in self.methods)

    def needs_sdf(self, method: Method) -> bool:
        """Whether `method` takes the pre-trained goal autoencoder (`sdf_sources` set, a pianomime
        method with an SDF goal and no `sdf_dir` of its own)."""
        config = dict(method.config)
        return (bool(self.sdf_sources) and method.policy == "pianomime"
                and config.get("goal_encoding", "sdf") == "sdf" and not config.get("sdf_dir"))

    def trained_methods(self, sdf_dir: str | None = None) -> tuple[Method, ...]:
        """`scaled_methods`, with `sdf_dir` given to the methods that `needs_sdf`."""
        return tuple(dataclasses.replace(m, config={**dict(m.config), "sdf_dir": sdf_dir})
                     if sdf_dir and self.needs_sdf(m) else m for m in self.scaled_methods())

    @classmethod
    def from_params(cls, section: Mapping[str, Any], **overrides) -> "BenchmarkConfig":
        """From a validated params.yaml `benchmark:` section (`tasks.params`), CLI overrides on top."""
        values = dict(section)
        values.update({k: v for k, v in overrides.items() if v is not None})
        groups = values.pop("groups", {}) or {}
        kwargs: dict[str, Any] = {}
        for name in GROUPS:
            spec = groups.get(name) or {}
            kwargs[name] = GroupSpec(songs=tuple(spec.get("songs") or ()), limit=spec.get("limit"))
        if values.get("methods") is not None:
            kwargs["methods"] = tuple(
                Method(m["label"], m["policy"], tuplify(m.get("config") or {})) for m in values.pop("methods")
            )
        else:
            values.pop("methods", None)
        if values.get("eval") is not None:
            kwargs["eval"] = EvalConfig(**values.pop("eval"))
        for key in ("train_songs", "train_sizes", "sdf_sources"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BenchmarkError(f"benchmark: unknown keys {unknown}")
        return cls(**{**values, **kwargs})


def tuplify(value):
    if isinstance(value, (list, tuple)):
        return tuple(tuplify(v) for v in value)
    if isinstance(value, Mapping):
        return {k: tuplify(v) for k, v in value.items()}
    return value


def jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def digest(payload) -> str:
    return hashlib.sha256(json.dumps(jsonable(payload), sort_keys=True).encode()).hexdigest()


def write_json(path: Path, payload) -> None:
    atomic.write_json(path, jsonable(payload))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ----------------------------------------------------------------------------- policies
