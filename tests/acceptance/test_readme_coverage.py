"""Every `pianoset` subcommand and `dvc repro` stage in the README's command blocks is run by an
acceptance test (through `Project.pianoset("<command>", ...)` / `Project.dvc("repro", "<stage>")`),
and every stage of dvc.yaml that the README names exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _readme_commands() -> tuple[set[str], set[str]]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    subcommands, stages = set(), set()
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if m := re.match(r"pianoset (?:--\S+ )*([a-z][a-z-]*)", line):
                subcommands.add(m.group(1))
            if m := re.match(r"dvc repro ([\w@-]+)", line):
                stages.add(m.group(1))
    return subcommands, stages


def _tested_commands() -> tuple[set[str], set[str]]:
    sources = "\n".join(p.read_text() for p in HERE.glob("test_*.py"))
    subcommands = set(re.findall(r"\.pianoset\(\s*\"([a-z-]+)\"", sources))
    subcommands |= set(re.findall(r"run_cli\(\s*\"([a-z-]+)\"", sources))
    stages = set(re.findall(r"\.dvc\(\s*\"repro\",\s*\"([\w@-]+)\"", sources))
    return subcommands, stages


def test_every_readme_command_is_run_by_an_acceptance_test():
    readme_subcommands, readme_stages = _readme_commands()
    subcommands, stages = _tested_commands()
    assert {"collect", "benchmark", "songs"} <= readme_subcommands  # the parser finds the blocks
    assert not readme_subcommands - subcommands, f"README commands no acceptance test runs: {readme_subcommands - subcommands}"
    assert not readme_stages - stages, f"README dvc stages no acceptance test runs: {readme_stages - stages}"


def test_readme_stages_exist_in_dvc_yaml():
    from tasks.params import load_params

    _, readme_stages = _readme_commands()
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    sources = load_params(REPO / "params.yaml")["catalog"]["sources"]
    names = {f"catalog@{s}" for s in sources} | (set(dvc) - {"catalog"})
    assert readme_stages <= names, readme_stages - names
    assert {"collect", "stats", "benchmark"} <= readme_stages
