"""`params.yaml`: the one parser of the run parameters every command reads
(over 400 lines: every section's checks in one place, so each error names the file and key).

`pianoset collect|benchmark|stats|status|publish|pull` and the DVC stages all
read the file through `load_params` (no other code parses it) and build their
frozen configs from the validated sections (`tasks.collect.CollectConfig.
from_params`, `tasks.benchmark.BenchmarkConfig.from_params`).

DVC reads the same file: the `collect` stage of `dvc.yaml` depends on the
`collect` section (so `dvc status` says when the recorded shards were made
with other parameters), and `dvc.yaml` takes its output folders from it
(`${collect.shards_dir}`, ...). `load_params` validates the whole file and
fills in the defaults below; every error names the key, its value and what
was expected ("params.yaml: collect.workers = 0, expected an integer >= 1").

Sections::

    catalog: {sources: [robopianist, music21]}   # what the `catalog` DVC stage builds
    collect:
      songs: [robopianist:TwinkleTwinkleRousseau, ...]   # explicit refs, or
      catalog_filter: {source, playable, max_duration_s, limit, query}
      profile: smoke            # training budget (tasks.specialist.PROFILES)
      n_rollouts: null          # rollouts per chunk; null: per profile (smoke 16, cpu 100, paper 500 = RP1M)
      workers: 2                # rollout worker processes per chunk
      parallel_chunks: 2        # chunks trained at once (local runner)
      seed: 0
      runner: local             # local | ray
      ray_address: null         # Ray cluster address, for runner: ray
      register: true            # record new shards with DVC after the run
      work_dir: work            # checkpoints, rollouts (git-ignored, not DVC-tracked; may be absolute)
      shards_dir: datasets/shards
      specialists_dir: datasets/specialists
      env: {fingering: ot}      # EnvConfig fields (physics_timestep, four_fingers, ...) and the
                                # reward's (fingering: ot | human | none, ot_reduction, ...)
      specialist: droq          # droq | residual | ik | mpc (tasks.specialist.KINDS)
      residual: {}              # tasks.specialist.ResidualSpecialistConfig fields (residual, ik, mpc)
      mpc: {}                   # tasks.specialist_mpc.MPCSpecialistConfig fields (mpc)
    stats: {reports_dir: datasets/reports/stats}   # reads the shards of collect.shards_dir
    benchmark:                  # the policy benchmark (tasks/benchmark.py, RP1M Table 2)
      shards_dir: datasets/shards
      train_songs: null         # song ids to train on (null: every complete song folder)
      train_sizes: null         # e.g. [50, 150, 300]: first N songs (null: one set, all)
      profile: smoke            # training steps per policy (tasks.benchmark.PROFILE_STEPS)
      model_scale: small        # small: sizes capped to fit 24 GiB (tasks.benchmark.SMALL_SCALE); paper: RP1M's
      steps: null               # overrides the profile's steps
      seed: 0
      methods: [{label, policy, config}, ...]   # null: RP1M Table 2's six columns
      groups: {in_distribution: {songs, limit}, easy_ood: {songs}, hard_ood: {songs}}
      eval: {max_chunks_per_song, episodes_per_chunk, max_steps, lanes, seed}
      workers: 1
      work_dir: work
      specialists_dir: datasets/specialists
      policies_dir: datasets/policies
      reports_dir: datasets/reports/benchmark
    dvc: {remote_name: local, remote_url: ~/.cache/pianoset/dvc-remote}
    quality:                    # benchmarks/specialist_quality.py: the fixed dev/holdout chunk split
      dev: [{ref, chunk, why}, ...]
      holdout: [{ref, chunk, why}, ...]
      rollouts: 4
      work_dir: .cache/specialist_quality
      reports_dir: datasets/reports/specialist_quality

`collect` takes exactly one of `songs` and `catalog_filter`. The profile name
and the `residual` fields are checked when the configs are built
(`tasks.specialist`; importing it here would pull JAX into every reader of
this file). An unknown key is an error naming the key, its section and the
keys allowed there.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from envs.piano.config import FINGERING_MODES, EnvConfig, RewardConfig
from tasks.names import SPECIALIST_KINDS

RUNNERS = ("local", "ray")
DEFAULT_REMOTE_NAME = "local"
DEFAULT_REMOTE_URL = "~/.cache/pianoset/dvc-remote"  # expanded on the machine that configures it

DEFAULTS: dict[str, Any] = {
    "catalog": {"sources": ["robopianist", "music21"]},
    "collect": {
        "profile": "smoke",
        "n_rollouts": None,  # None: per profile (tasks.collect.PROFILE_ROLLOUTS; paper: RP1M's 500)
        "workers": 2,
        "parallel_chunks": 2,
        "seed": 0,
        "runner": "local",
        "ray_address": None,
        "register": True,
        "work_dir": "work",
        "shards_dir": "datasets/shards",
        "specialists_dir": "datasets/specialists",
        "env": {"fingering": "ot"},
        "specialist": "droq",
        "residual": {},
        "mpc": {},
    },
    "stats": {"reports_dir": "datasets/reports/stats"},
    "benchmark": {
        "shards_dir": "datasets/shards",
        "train_songs": None,
        "train_sizes": None,
        "profile": "smoke",
        "model_scale": "small",  # tasks.benchmark.MODEL_SCALES: small fits a 24 GiB machine, paper is RP1M's
        "steps": None,
        "seed": 0,
        "methods": None,  # None: RP1M Table 2's columns (tasks.benchmark.RP1M_METHODS)
        "groups": {"in_distribution": {"songs": [], "limit": 12}, "easy_ood": {"songs": []}, "hard_ood": {"songs": []}},
        "eval": {"max_chunks_per_song": None, "episodes_per_chunk": 1, "max_steps": None, "lanes": 8, "seed": 0},
        "workers": 1,
        "work_dir": "work",
        "specialists_dir": "datasets/specialists",
        "policies_dir": "datasets/policies",
        "reports_dir": "datasets/reports/benchmark",
        # PianoMime's goal autoencoder pre-trained on these catalog sources' songs (App. G;
        # tasks.benchmark.sdf); []: each pianomime method trains it on its training songs.
        "sdf_sources": [],
        "sdf_max_steps": 0,
        "sdf_limit": None,
        "catalog_dir": "datasets/catalog",
    },
    "dvc": {"remote_name": DEFAULT_REMOTE_NAME, "remote_url": DEFAULT_REMOTE_URL},
    "quality": {"dev": [], "holdout": [], "rollouts": 4, "work_dir": ".cache/specialist_quality",
                "reports_dir": "datasets/reports/specialist_quality"},
}
# Reserved for an independent evaluation (issue 18): in no benchmark set and no
# tuning. Matched against music21 corpus refs (with or without the extension).
RESERVED_EVAL_PIECES = ("joplin/maple_leaf_rag", "chopin/mazurka06-2", "mozart/k545",
                        "schumann_clara/polonaise_op1n1", "cpebach/h186")


def reserved_piece(ref: str) -> str | None:
    """The reserved piece `ref` names (see RESERVED_EVAL_PIECES), or None."""
    text = str(ref).lower().replace("\\", "/")
    for name in RESERVED_EVAL_PIECES:
        index = text.find(name)
        if index >= 0 and text[index + len(name):index + len(name) + 1] in ("", ".", "#", "/", ":"):
            return name
    return None


CATALOG_FILTER_KEYS = ("source", "playable", "max_duration_s", "limit", "query")
# The two built-in songs of `pianoset collect` without --params (and of `make demo`).
DEFAULT_SONGS = ("robopianist:TwinkleTwinkleRousseau", "robopianist:CMajorScaleTwoHands")
_REWARD_FIELDS = tuple(RewardConfig.__dataclass_fields__)
_ENV_FIELDS = tuple(f for f in EnvConfig.__dataclass_fields__ if f != "reward")


def env_config_dict(env: Mapping[str, Any]) -> dict[str, Any]:
    """A `collect.env` section (EnvConfig fields, the reward's fields flat beside them) as the
    nested dict `EnvConfig.from_dict` takes."""
    env = dict(env)
    reward = dict(env.pop("reward", {}) or {})
    reward.update({k: env.pop(k) for k in list(env) if k in _REWARD_FIELDS})
    return {**env, "reward": reward} if reward else env


class ParamsError(ValueError):
    """params.yaml is missing, unreadable, or has a bad value."""


def load_params(path: str | Path | None = "params.yaml") -> dict[str, Any]:
    """The validated parameters of `path` (None: the defaults alone), defaults filled in.
    Raises `ParamsError`."""
    if path is None:
        return validate_params({"collect": {"songs": list(DEFAULT_SONGS)}}, source="defaults")
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameters file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    return validate_params(raw if raw is not None else {}, source=str(path))


def validate_params(raw: Any, source: str = "params.yaml") -> dict[str, Any]:
    """`raw` (parsed YAML) checked key by key, with the defaults filled in."""
    check = _Checker(source)
    raw = check.mapping("", raw)
    check.known_keys("", raw, DEFAULTS)
    params = copy.deepcopy(DEFAULTS)
    for section in DEFAULTS:
        given = check.mapping(section, raw.get(section, {}))
        params[section].update(given)
    check.known_keys("catalog", params["catalog"], DEFAULTS["catalog"])
    sources = params["catalog"]["sources"]
    if not isinstance(sources, list) or not sources:
        check.fail("catalog.sources", sources, "a non-empty list of sources (robopianist, music21, a MIDI folder)")
    for i, source in enumerate(sources):
        check.string(f"catalog.sources[{i}]", source)
    _check_collect(check, params["collect"])
    check.path("stats.reports_dir", params["stats"]["reports_dir"])
    check.known_keys("stats", params["stats"], DEFAULTS["stats"])
    _check_benchmark(check, params["benchmark"])
    _check_dvc(check, params["dvc"])
    _check_quality(check, params["quality"])
    return params


def _check_collect(check: _Checker, collect: dict[str, Any]) -> None:
    allowed = {**DEFAULTS["collect"], "songs": None, "catalog_filter": None}
    check.known_keys("collect", collect, allowed)
    has_songs, has_filter = "songs" in collect, "catalog_filter" in collect
    if has_songs == has_filter:
        found = "both" if has_songs else "neither"
        raise ParamsError(f"{check.source}: collect has {found} of 'songs' and 'catalog_filter', expected exactly one")
    if has_songs:
        songs = collect["songs"]
        if not isinstance(songs, list) or not songs:
            check.fail("collect.songs", songs, "a non-empty list of song refs")
        for i, ref in enumerate(songs):
            check.string(f"collect.songs[{i}]", ref)
    else:
        _check_catalog_filter(check, collect["catalog_filter"])
    check.string("collect.profile", collect["profile"])
    if collect["n_rollouts"] is not None:
        check.integer("collect.n_rollouts", collect["n_rollouts"], minimum=1)
    check.integer("collect.workers", collect["workers"], minimum=1)
    check.integer("collect.parallel_chunks", collect["parallel_chunks"], minimum=1)
    check.integer("collect.seed", collect["seed"], minimum=0)
    if not isinstance(collect["register"], bool):
        check.fail("collect.register", collect["register"], "true or false")
    check.choice("collect.runner", collect["runner"], RUNNERS)
    if collect["ray_address"] is not None:
        check.string("collect.ray_address", collect["ray_address"])
    check.string("collect.work_dir", collect["work_dir"])  # may be absolute (shared storage)
    for key in ("shards_dir", "specialists_dir"):  # DVC outputs: inside the repository
        check.path(f"collect.{key}", collect[key])
    env = check.mapping("collect.env", collect["env"])
    check.known_keys("collect.env", env, dict.fromkeys(_ENV_FIELDS + _REWARD_FIELDS + ("reward",)))
    if "reward" in env:
        check.known_keys("collect.env.reward", check.mapping("collect.env.reward", env["reward"]),
                         dict.fromkeys(_REWARD_FIELDS))
    collect["env"] = {**DEFAULTS["collect"]["env"], **env}
    if "fingering" in collect["env"]:
        check.choice("collect.env.fingering", collect["env"]["fingering"], FINGERING_MODES)
    try:
        EnvConfig.from_dict(env_config_dict(collect["env"]))
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{check.source}: collect.env: {exc}") from None
    check.choice("collect.specialist", collect["specialist"], SPECIALIST_KINDS)
    check.mapping("collect.residual", collect["residual"])
    check.mapping("collect.mpc", collect["mpc"])


def _check_catalog_filter(check: _Checker, spec: Any) -> None:
    spec = check.mapping("collect.catalog_filter", spec)
    check.known_keys("collect.catalog_filter", spec, dict.fromkeys(CATALOG_FILTER_KEYS))
    if "source" in spec:
        check.string("collect.catalog_filter.source", spec["source"])
    if spec.get("playable") is not None and not isinstance(spec["playable"], bool):
        check.fail("collect.catalog_filter.playable", spec["playable"], "true, false or null")
    if spec.get("max_duration_s") is not None:
        check.number("collect.catalog_filter.max_duration_s", spec["max_duration_s"], positive=True)
    if spec.get("limit") is not None:
        check.integer("collect.catalog_filter.limit", spec["limit"], minimum=1)
    if spec.get("query") is not None:
        check.string("collect.catalog_filter.query", spec["query"])


def _check_benchmark(check: _Checker, bench: dict[str, Any]) -> None:
    defaults = DEFAULTS["benchmark"]
    check.known_keys("benchmark", bench, defaults)
    for key in ("shards_dir", "specialists_dir", "policies_dir", "reports_dir"):  # DVC deps/outputs
        check.path(f"benchmark.{key}", bench[key])
    check.string("benchmark.work_dir", bench["work_dir"])
    if bench["train_songs"] is not None:
        songs = bench["train_songs"]
        if not isinstance(songs, list) or not songs:
            check.fail("benchmark.train_songs", songs, "null or a non-empty list of song ids")
        for i, song in enumerate(songs):
            check.string(f"benchmark.train_songs[{i}]", song)
    if bench["train_sizes"] is not None:
        sizes = bench["train_sizes"]
        if not isinstance(sizes, list) or not sizes:
            check.fail("benchmark.train_sizes", sizes, "null or a non-empty list of song counts")
        for i, size in enumerate(sizes):
            check.integer(f"benchmark.train_sizes[{i}]", size, minimum=1)
    if not isinstance(bench["sdf_sources"], list):
        check.fail("benchmark.sdf_sources", bench["sdf_sources"], "a list of catalog sources (robopianist, "
                   "music21, MIDI files or folders)")
    for i, source in enumerate(bench["sdf_sources"]):
        check.string(f"benchmark.sdf_sources[{i}]", source)
    check.integer("benchmark.sdf_max_steps", bench["sdf_max_steps"], minimum=0)
    if bench["sdf_limit"] is not None:
        check.integer("benchmark.sdf_limit", bench["sdf_limit"], minimum=1)
    check.string("benchmark.catalog_dir", bench["catalog_dir"])
    check.string("benchmark.profile", bench["profile"])
    check.choice("benchmark.model_scale", bench["model_scale"], ("small", "paper"))
    if bench["steps"] is not None:
        check.integer("benchmark.steps", bench["steps"], minimum=1)
    check.integer("benchmark.seed", bench["seed"], minimum=0)
    check.integer("benchmark.workers", bench["workers"], minimum=1)
    if bench["methods"] is not None:
        methods = bench["methods"]
        if not isinstance(methods, list) or not methods:
            check.fail("benchmark.methods", methods, "null or a non-empty list of {label, policy, config}")
        labels = set()
        for i, method in enumerate(methods):
            method = check.mapping(f"benchmark.methods[{i}]", method)
            check.known_keys(f"benchmark.methods[{i}]", method, {"label": None, "policy": None, "config": None})
            check.string(f"benchmark.methods[{i}].label", method.get("label"))
            check.string(f"benchmark.methods[{i}].policy", method.get("policy"))
            if method.get("config") is not None:
                check.mapping(f"benchmark.methods[{i}].config", method["config"])
            if method["label"] in labels:
                check.fail(f"benchmark.methods[{i}].label", method["label"], "a label no other method has")
            labels.add(method["label"])
    groups = check.mapping("benchmark.groups", bench["groups"])
    check.known_keys("benchmark.groups", groups, defaults["groups"])
    bench["groups"] = {name: dict(spec) for name, spec in defaults["groups"].items()}
    for name, given in groups.items():
        spec = check.mapping(f"benchmark.groups.{name}", given if given is not None else {})
        check.known_keys(f"benchmark.groups.{name}", spec, defaults["groups"][name])
        bench["groups"][name].update(spec)
        songs = bench["groups"][name]["songs"]
        if songs is None:
            bench["groups"][name]["songs"] = songs = []
        if not isinstance(songs, list):
            check.fail(f"benchmark.groups.{name}.songs", songs, "a list of song refs")
        for i, ref in enumerate(songs):
            check.string(f"benchmark.groups.{name}.songs[{i}]", ref)
    limit = bench["groups"]["in_distribution"]["limit"]
    if limit is not None:
        check.integer("benchmark.groups.in_distribution.limit", limit, minimum=1)
    given_eval = check.mapping("benchmark.eval", bench["eval"])
    check.known_keys("benchmark.eval", given_eval, defaults["eval"])
    bench["eval"] = {**defaults["eval"], **given_eval}
    for key in ("max_chunks_per_song", "max_steps"):
        if bench["eval"][key] is not None:
            check.integer(f"benchmark.eval.{key}", bench["eval"][key], minimum=1)
    for key in ("episodes_per_chunk", "lanes"):
        check.integer(f"benchmark.eval.{key}", bench["eval"][key], minimum=1)
    check.integer("benchmark.eval.seed", bench["eval"]["seed"], minimum=0)


def _check_quality(check: _Checker, quality: dict[str, Any]) -> None:
    check.known_keys("quality", quality, DEFAULTS["quality"])
    seen: dict[tuple[str, int], str] = {}
    for name in ("dev", "holdout"):
        entries = quality[name]
        if not isinstance(entries, list):
            check.fail(f"quality.{name}", entries, "a list of {ref, chunk, why}")
        for i, entry in enumerate(entries):
            key = f"quality.{name}[{i}]"
            entry = check.mapping(key, entry)
            check.known_keys(key, entry, {"ref": None, "chunk": None, "why": None})
            check.string(f"{key}.ref", entry.get("ref"))
            check.integer(f"{key}.chunk", entry.get("chunk"), minimum=0)
            check.string(f"{key}.why", entry.get("why"))
            if reserved_piece(entry["ref"]):
                check.fail(f"{key}.ref", entry["ref"], f"a piece not reserved for evaluation ({RESERVED_EVAL_PIECES})")
            where = seen.setdefault((entry["ref"], entry["chunk"]), key)
            if where != key:
                check.fail(f"{key}", f"{entry['ref']}:{entry['chunk']}", f"a chunk not already listed ({where})")
    check.integer("quality.rollouts", quality["rollouts"], minimum=1)
    check.string("quality.work_dir", quality["work_dir"])
    check.path("quality.reports_dir", quality["reports_dir"])


def _check_dvc(check: _Checker, dvc: dict[str, Any]) -> None:
    check.known_keys("dvc", dvc, DEFAULTS["dvc"])
    check.string("dvc.remote_name", dvc["remote_name"])
    if not dvc["remote_name"].replace("-", "").replace("_", "").isalnum():
        check.fail("dvc.remote_name", dvc["remote_name"], "letters, digits, '-' or '_'")
    check.string("dvc.remote_url", dvc["remote_url"])


class _Checker:
    """Raises `ParamsError` messages of one shape: '<file>: <key> = <value>, expected <what>'."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, expected: str) -> None:
        raise ParamsError(f"{self.source}: {key or 'the file'} = {value!r}, expected {expected}")

    def mapping(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(key, value, "a mapping of keys to values")
        return dict(value)

    def known_keys(self, key: str, value: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            where = f"{key}.{unknown[0]}" if key else str(unknown[0])
            raise ParamsError(f"{self.source}: unknown key {where!r} (known in {key or 'the file'}: {sorted(allowed)})")

    def string(self, key: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "a non-empty string")

    def integer(self, key: str, value: Any, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, value, f"an integer >= {minimum}")

    def number(self, key: str, value: Any, positive: bool) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and value <= 0):
            self.fail(key, value, "a number > 0" if positive else "a number")

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> None:
        if value not in choices:
            self.fail(key, value, f"one of {list(choices)}")

    def path(self, key: str, value: Any) -> None:
        """A folder inside the repository: relative, no '..' (DVC outputs must be)."""
        self.string(key, value)
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts:
            self.fail(key, value, "a relative path inside the repository, without '..'")

