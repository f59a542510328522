"""tasks/params.py: the one parser of params.yaml, and the configs every command builds from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.params import ParamsError, env_config_dict, load_params, validate_params

PROJECT = Path(__file__).resolve().parents[2]


def test_project_params_file_is_valid():
    params = load_params(PROJECT / "params.yaml")
    assert params["collect"]["songs"] == ["robopianist:TwinkleTwinkleRousseau", "robopianist:CMajorScaleTwoHands"]
    assert params["collect"]["n_rollouts"] is None and params["collect"]["runner"] == "local"
    assert params["collect"]["shards_dir"] == "datasets/shards"
    assert params["stats"]["reports_dir"] == "datasets/reports/stats"
    assert params["dvc"] == {"remote_name": "local", "remote_url": "~/.cache/pianoset/dvc-remote"}


@pytest.mark.parametrize(
    "collect, message",
    [
        ({"songs": ["x"], "workers": 0}, "collect.workers = 0, expected an integer >= 1"),
        ({"songs": ["x"], "n_rolouts": 5}, "unknown key 'collect.n_rolouts'"),
        ({"songs": ["x"], "catalog_filter": {"limit": 3}}, "both of 'songs' and 'catalog_filter'"),
        ({"profile": "smoke"}, "neither of 'songs' and 'catalog_filter'"),
        ({"catalog_filter": {"limit": 0}}, "collect.catalog_filter.limit = 0"),
        ({"songs": ["x"], "env": {"fingering": "magic"}}, "collect.env.fingering = 'magic', expected one of"),
        ({"songs": ["x"], "shards_dir": "../elsewhere"}, "collect.shards_dir = '../elsewhere'"),
    ],
)
def test_params_errors_name_the_key(collect, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_params({"collect": collect}, source="p.yaml")


def test_params_defaults_and_catalog_filter(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("collect:\n  catalog_filter: {source: music21, playable: true, max_duration_s: 60}\n")
    params = load_params(path)
    assert params["collect"]["catalog_filter"]["source"] == "music21"
    assert params["collect"]["workers"] == 2 and params["collect"]["env"] == {"fingering": "ot"}
    assert params["dvc"]["remote_name"] == "local"
    with pytest.raises(ParamsError, match="no such parameters file"):
        load_params(tmp_path / "missing.yaml")




def test_shipped_params_build_every_commands_config():
    """What broke users: the validator accepted the file and the config builders did not."""
    from tasks.benchmark import BenchmarkConfig
    from tasks.collect import CollectConfig

    params = load_params(PROJECT / "params.yaml")
    collect = CollectConfig.from_params(params["collect"])
    assert collect.env_config().reward.fingering == "ot"
    assert (collect.ray_address, collect.parallel_chunks, collect.register) == (None, 2, True)
    assert collect.rollouts == 16  # smoke profile default
    bench = BenchmarkConfig.from_params(params["benchmark"])
    assert [m.label for m in bench.methods][:2] == ["BC (256)", "BC (1024)"]
    assert params["catalog"]["sources"] == ["robopianist", "music21"]


def test_env_section_takes_env_and_reward_fields_flat_or_nested():
    assert env_config_dict({"fingering": "none", "physics_timestep": 0.005}) == {
        "physics_timestep": 0.005, "reward": {"fingering": "none"}}
    assert env_config_dict({"reward": {"energy_coef": 0.0}, "fingering": "human"}) == {
        "reward": {"energy_coef": 0.0, "fingering": "human"}}
    with pytest.raises(ParamsError, match=r"unknown key 'collect.env.fingerin' \(known in collect.env: \[.*'fingering'"):
        validate_params({"collect": {"songs": ["x"], "env": {"fingerin": "ot"}}})
    with pytest.raises(ParamsError, match=r"collect.env: EnvConfig: need 0 < physics_timestep"):
        validate_params({"collect": {"songs": ["x"], "env": {"physics_timestep": -1.0}}})


def test_collect_section_keys_are_the_configs_keys():
    from tasks.collect import CollectConfig

    params = validate_params({"collect": {"songs": ["x"], "ray_address": "127.0.0.1:6379", "runner": "ray",
                                          "parallel_chunks": 3, "register": False}})
    config = CollectConfig.from_params(params["collect"])
    assert (config.ray_address, config.parallel_chunks, config.register) == ("127.0.0.1:6379", 3, False)
    with pytest.raises(ParamsError, match="collect.register = 'yes', expected true or false"):
        validate_params({"collect": {"songs": ["x"], "register": "yes"}})
    residual = validate_params({"collect": {"songs": ["x"], "specialist": "ik", "residual": {"scal": 1}}})
    with pytest.raises(ValueError, match=r"residual: unknown fields \['scal'\]; allowed: \[.*'scale'"):
        CollectConfig.from_params(residual["collect"])
    mpc = validate_params({"collect": {"songs": ["x"], "specialist": "mpc", "mpc": {"n_samples": 7, "rollout_noise": 0.1}}})
    config = CollectConfig.from_params(mpc["collect"])
    assert (config.mpc_config().planner.n_samples, config.mpc_config().rollout_noise) == (7, 0.1)
    with pytest.raises(ParamsError, match="collect.mpc = 3"):
        validate_params({"collect": {"songs": ["x"], "specialist": "mpc", "mpc": 3}})
    with pytest.raises(ValueError, match=r"mpc: unknown fields \['samples'\]"):
        CollectConfig.from_params(validate_params({"collect": {"songs": ["x"], "specialist": "mpc",
                                                               "mpc": {"samples": 7}}})["collect"])


def test_unknown_section_and_benchmark_keys_name_section_and_allowed_keys():
    with pytest.raises(ParamsError, match=r"unknown key 'colect' \(known in the file: \['benchmark', 'catalog'"):
        validate_params({"colect": {}})
    with pytest.raises(ParamsError, match=r"unknown key 'benchmark.model_size' \(known in benchmark: .*'model_scale'"):
        validate_params({"collect": {"songs": ["x"]}, "benchmark": {"model_size": "small"}})


def test_model_scale_small_caps_only_what_a_method_leaves_at_paper_size():
    from tasks.benchmark import SMALL_SCALE, BenchmarkConfig, Method

    methods = (Method("IBC", "ibc"), Method("IBC big batch", "ibc", {"batch_size": 256}), Method("BC", "bc"))
    small = BenchmarkConfig(methods=methods, model_scale="small").scaled_methods()
    assert dict(small[0].config) == SMALL_SCALE["ibc"]
    assert dict(small[1].config)["batch_size"] == 256 and dict(small[1].config)["num_counter_examples"] == 256
    assert dict(small[2].config) == {}
    assert BenchmarkConfig(methods=methods, model_scale="paper").scaled_methods() == methods


def test_catalog_filter_query_selects_songs(tmp_path):
    from envs.music.catalog import select_songs
    from envs.music.catalog_build import build_catalog

    build_catalog(["robopianist"], out_dir=tmp_path, workers=1)
    assert select_songs({"source": "robopianist", "query": "twinkle rousseau"}, tmp_path) == [
        "robopianist:TwinkleTwinkleRousseau"]
    assert len(select_songs({"source": "robopianist", "query": "twinkle"}, tmp_path)) == 2
    with pytest.raises(ValueError, match="matches no song"):
        select_songs({"source": "robopianist", "query": "no such piece"}, tmp_path)


def test_generalist_methods_are_accepted_and_resolve_to_their_configs():
    """PianoMime's variants and flow matching, written as params.yaml documents them, pass the
    parser and become configs of the registered policies."""
    from agents.flow_matching import FlowMatchingConfig
    from agents.pianomime import PianoMimeConfig
    from tasks.benchmark import GENERALIST_METHODS, BenchmarkConfig, BenchmarkError, Method
    from tasks.benchmark.train import resolve_config

    methods = [m.as_dict() for m in GENERALIST_METHODS]
    params = validate_params({"collect": {"songs": ["x"]}, "benchmark": {"methods": methods}}, source="p.yaml")
    config = BenchmarkConfig.from_params(params["benchmark"])
    assert [m.label for m in config.methods] == [m.label for m in GENERALIST_METHODS]
    resolved = {m.label: resolve_config(m) for m in config.scaled_methods()}
    assert resolved["Two-stage Diff"] == PianoMimeConfig(batch_size=64)  # small scale caps the batch only
    assert resolved["Two-stage Diff-res"].low_level == "residual"
    assert resolved["One-stage Diff"].stages == 1 and resolved["Two-stage BeT"].generator == "bet"
    assert resolved["Two-stage Diff w/o SDF"].goal_encoding == "binary"
    assert (resolved["Two-stage Diff"].high_inference_steps, resolved["Two-stage Diff"].low_inference_steps) == (80, 50)
    assert isinstance(resolved["Flow Matching"], FlowMatchingConfig)
    with pytest.raises(BenchmarkError, match="low_level='residual' needs stages=2"):
        resolve_config(Method("bad", "pianomime", {"stages": 1, "low_level": "residual"}))


def test_shipped_params_parse_with_dvcs_yaml_reader():
    """DVC reads params.yaml with ruamel, stricter than PyYAML (a plain `music21:x` in a flow mapping
    breaks it, and with it every `dvc` command)."""
    from pathlib import Path

    import yaml
    from ruamel.yaml import YAML

    path = Path(__file__).resolve().parents[2] / "params.yaml"
    assert YAML(typ="safe").load(path.read_text()) == yaml.safe_load(path.read_text())
