"""Registering outputs with DVC (dvc commit of the outputs that changed) and describing what changed."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tasks.registry.dvc import COLLECT_STAGE, RegistryError, keep_ignored, open_dvc_repo, relative

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- register


def register_outputs(root: Path, paths: Sequence[str | Path] | None) -> dict[str, Any]:
    # DVC's API resolves targets against the process's cwd, like its CLI: pass them absolute.
    names = [relative(root, p) for p in paths] if paths else [COLLECT_STAGE]
    absolute = [os.fspath(root / n) for n in names] if paths else [f"{root / 'dvc.yaml'}:{COLLECT_STAGE}"]
    before = _locked_outputs(root)
    with open_dvc_repo(root, f"dvc commit {' '.join(names)}") as dvc_repo:
        outputs = _outputs_of(dvc_repo, absolute)
        for out in outputs:
            if not (root / out).exists() and not Path(out).suffix:
                logger.info("%s does not exist yet; registering it as an empty folder", out)
                (root / out).mkdir(parents=True)
        for target in absolute:
            dvc_repo.commit(target, force=True)  # force: never prompt
        after = _locked_outputs(root)
        cache = _cache_paths(dvc_repo)
        summary = {out: _output_change(cache, before.get(out), after.get(out), out) for out in outputs}
    keep_ignored(root, outputs)
    changed = any(s["changed"] for s in summary.values())
    logger.info("registered %s: %s", ", ".join(outputs), _describe(summary) if changed else "nothing changed")
    return {"changed": changed, "outputs": summary}


def all_outputs(root: Path) -> list[str]:
    with open_dvc_repo(root, "reading dvc.yaml") as dvc_repo:
        return _outputs_of(dvc_repo, None)


def _outputs_of(dvc_repo, targets: Sequence[str] | None) -> list[str]:
    """Output paths (relative, as in dvc.lock) of the stages that own `targets`
    (all stages when None)."""
    if targets is None:
        stages = list(dvc_repo.index.stages)
    else:
        stages = [info.stage for t in targets for info in dvc_repo.stage.collect_granular(t)]
    outs = [out.def_path for stage in stages for out in stage.outs]
    if targets is not None and not outs:
        raise RegistryError(f"{dvc_repo.root_dir}: {', '.join(targets)} has no outputs in dvc.yaml")
    return list(dict.fromkeys(outs))


def _locked_outputs(root: Path) -> dict[str, dict[str, Any]]:
    """`{path: {"md5", "nfiles", "size"}}` of every output recorded in dvc.lock."""
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text()) or {}
    recorded = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            recorded[out["path"]] = {key: out.get(key) for key in ("md5", "nfiles", "size")}
    return recorded


def _cache_paths(dvc_repo):
    """oid -> path of that object in the repository's local cache."""
    odb = dvc_repo.cache.local
    return lambda oid: Path(odb.oid_to_path(oid))


def _dir_entries(cache, md5: str | None) -> dict[str, frozenset] | None:
    """Top-level folder -> its (relpath, md5) set, from a `.dir` object in the cache."""
    if not md5 or not md5.endswith(".dir"):
        return None
    path = cache(md5)
    if not path.is_file():
        return None
    grouped: dict[str, set] = {}
    for entry in json.loads(path.read_text()):
        top = entry["relpath"].split("/", 1)[0]
        grouped.setdefault(top, set()).add((entry["relpath"], entry["md5"]))
    return {name: frozenset(files) for name, files in grouped.items()}


def _output_change(cache, before: dict | None, after: dict | None, out: str) -> dict[str, Any]:
    if after is None:
        raise RegistryError(f"dvc commit left no record of {out} in dvc.lock")
    changed = before is None or before["md5"] != after["md5"]
    new = _dir_entries(cache, after["md5"]) or {}
    old = _dir_entries(cache, before["md5"]) if before else {}
    summary = {**after, "changed": changed, "entries": len(new)}
    if not changed:
        return {**summary, "added": [], "modified": [], "removed": []}
    if old is None:  # the previous version is not in this cache (fresh clone)
        return {**summary, "added": None, "modified": None, "removed": None}
    return {
        **summary,
        "added": sorted(set(new) - set(old)),
        "modified": sorted(name for name in set(new) & set(old) if new[name] != old[name]),
        "removed": sorted(set(old) - set(new)),
    }


def _describe(summary: dict[str, dict[str, Any]]) -> str:
    parts = []
    for out, s in summary.items():
        if s["changed"]:
            counts = "/".join(str(len(s[k])) if s[k] is not None else "?" for k in ("added", "modified", "removed"))
            parts.append(f"{out} ({s['entries']} entries, {s['nfiles']} files; added/modified/removed {counts})")
    return "; ".join(parts)
