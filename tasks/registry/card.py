"""The dataset card (`datasets/DATASET.md`) of a published version, and the shard validation publish needs.

`validate_shards(shards_dir)` checks every song folder against its manifest (files, sizes,
sha256, counts) and that all share one feature config; `publish` refuses a version when it
raises. `dataset_card(...)` writes what a user of the version needs: songs and sources with
their licences, chunk and episode counts, specialist kinds and budgets, the F1 distribution
(with the share of specialists above 0.75, as RP1M section 4.3 reports it: 79.00% of its
agents), the observation and action layout, and how to read it with `tfds`.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from tasks.rlds import DATASET_VERSION, Manifest, ShardError, observation_dims, read_manifest
from tasks.names import SPECIALIST_MANIFEST

CARD_NAME = "DATASET.md"
RP1M_F1_THRESHOLD = 0.75  # RP1M section 4.3: share of agents with F1 > 0.75
# Where each source's songs come from and under which terms they are redistributed, as the
# sources state them. A MIDI folder's terms are its own: the card says so.
SOURCE_LICENCES = {
    "robopianist": "MIDI files shipped with the robopianist package (Apache-2.0); its PIG-derived songs carry "
                   "the PIG dataset's research-use terms",
    "music21": "the corpus shipped with music21 (BSD-3-Clause package); its scores are public domain or "
               "redistributable as stated in music21's corpus documentation",
    "midi": "user-supplied MIDI files: the terms of their source (e.g. GiantMIDI-Piano: CC BY 4.0)",
    "unknown": "not in the catalog nor the collection's status records: check the song's origin",
}
ACTION_LAYOUT = ("right hand: 19 reduced Shadow-hand actuators incl. forearm x/y (dims 0-18); left hand: the "
                 "same (dims 19-37); sustain pedal (dim 38)")


class ValidationError(ShardError):
    """A song folder of a version to publish does not match its manifest or the others' format."""


def validate_shards(shards_dir: str | Path, *, verify: bool = True) -> list[tuple[Path, Manifest]]:
    """Every song folder under `shards_dir` with its manifest, checked (sha256 too with `verify`).
    Raises `ValidationError` naming each bad folder and why."""
    shards_dir = Path(shards_dir)
    if not shards_dir.is_dir():
        raise ValidationError(f"{shards_dir}: no shards folder")
    found, problems = [], []
    for song_dir in sorted(p for p in shards_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            manifest = read_manifest(song_dir, verify=verify)
        except ShardError as exc:
            problems.append(str(exc))
            continue
        if manifest.song_id != song_dir.name:
            problems.append(f"{song_dir}: the manifest is of song {manifest.song_id!r}")
            continue
        found.append((song_dir, manifest))
    hashes = Counter(m.config_hash for _, m in found)
    if len(hashes) > 1:
        common = hashes.most_common(1)[0][0]
        problems += [f"{d}: feature config {m.config_name} ({m.config_hash[:12]}) differs from the others'"
                     for d, m in found if m.config_hash != common]
    if problems:
        raise ValidationError(f"{len(problems)} song folder(s) of {shards_dir} fail validation:\n  "
                              + "\n  ".join(problems))
    if not found:
        raise ValidationError(f"{shards_dir}: no song folders to publish")
    return found


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _song_origins(catalog_dir: Path, work_dir: Path) -> dict[str, dict]:
    """song_id -> {source, ref, title}, from the catalog files and the collection's status records."""
    origins: dict[str, dict] = {}
    for path in sorted(catalog_dir.glob("*.jsonl")) if catalog_dir.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("id"):
                    origins.setdefault(row["id"], {k: row[k] for k in ("source", "ref", "title")})
    for path in sorted((work_dir / "status").glob("*.json")) if (work_dir / "status").is_dir() else []:
        rec = _read_json(path) or {}
        if rec.get("song_id") and rec["song_id"] not in origins and rec.get("ref"):
            ref = rec["ref"]
            source = ref.split(":", 1)[0] if ref.split(":", 1)[0] in ("robopianist", "music21") else "midi"
            origins[rec["song_id"]] = {"source": source, "ref": ref, "title": rec.get("title") or ""}
    return origins


def _histogram(values: list[float], bins: int = 10) -> list[int]:
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def card_facts(shards_dir: str | Path, specialists_dir: str | Path, catalog_dir: str | Path,
               work_dir: str | Path, *, songs: list[tuple[Path, Manifest]] | None = None) -> dict:
    """The numbers of the card, as a dict (also what tests check)."""
    songs = songs if songs is not None else validate_shards(shards_dir, verify=False)
    origins = _song_origins(Path(catalog_dir), Path(work_dir))
    episode_f1: list[float] = []
    chunk_f1: dict[str, list[float]] = {}
    rows = []
    for song_dir, m in songs:
        origin = origins.get(m.song_id, {"source": "unknown", "ref": "", "title": ""})
        chunks = {e.chunk_id for e in m.episodes}
        for e in m.episodes:
            episode_f1.append(e.f1)
            chunk_f1.setdefault(e.chunk_id, []).append(e.f1)
        rows.append({"song_id": m.song_id, **origin, "chunks": len(chunks), "episodes": m.n_episodes,
                     "steps": m.n_steps, "bytes": m.tfrecord_bytes,
                     "mean_f1": round(statistics.fmean(e.f1 for e in m.episodes), 4)})
    specialists = Counter()
    for chunk_id in chunk_f1:
        manifest = _read_json(Path(specialists_dir) / chunk_id / SPECIALIST_MANIFEST) or {}
        specialists[(manifest.get("kind", "unknown"), manifest.get("profile", "unknown"),
                     manifest.get("steps", "?"))] += 1
    per_specialist = [statistics.fmean(v) for v in chunk_f1.values()]
    return {
        "version": DATASET_VERSION, "songs": rows,
        "sources": dict(Counter(r["source"] for r in rows)),
        "n_songs": len(rows), "n_chunks": len(chunk_f1), "n_episodes": len(episode_f1),
        "n_steps": sum(r["steps"] for r in rows), "bytes": sum(r["bytes"] for r in rows),
        "specialists": [{"kind": k, "profile": p, "train_steps": s, "chunks": n}
                        for (k, p, s), n in sorted(specialists.items(), key=str)],
        "f1": {
            "episode_mean": round(statistics.fmean(episode_f1), 4),
            "episode_median": round(statistics.median(episode_f1), 4),
            "specialist_share_above_0.75": round(sum(f > RP1M_F1_THRESHOLD for f in per_specialist)
                                                 / len(per_specialist), 4),
            "episode_share_above_0.75": round(sum(f > RP1M_F1_THRESHOLD for f in episode_f1) / len(episode_f1), 4),
            "specialist_histogram": _histogram(per_specialist),
        },
        "observation": observation_dims(),
    }


def render_card(facts: dict, shards_dir: str) -> str:
    f1 = facts["f1"]
    lines = [
        "# pianoset dataset card", "",
        "Generated by `pianoset publish` (tasks/registry/card.py) from the shard manifests; do not edit.", "",
        f"- format: RLDS/TFDS, dataset `pianoset` version {facts['version']}, one folder per song under "
        f"`{shards_dir}/`",
        f"- {facts['n_songs']} songs, {facts['n_chunks']} chunks (one specialist each), {facts['n_episodes']} "
        f"episodes, {facts['n_steps']} steps, {facts['bytes'] / 1e6:.1f} MB of TFRecords", "",
        "## Sources and licences", "", "| source | songs | licence |", "|---|---|---|",
    ]
    lines += [f"| {s} | {n} | {SOURCE_LICENCES.get(s, SOURCE_LICENCES['unknown'])} |"
              for s, n in sorted(facts["sources"].items())]
    lines += ["", "## Specialists", "", "| kind | budget | training steps | chunks |", "|---|---|---|---|"]
    lines += [f"| {s['kind']} | {s['profile']} | {s['train_steps']} | {s['chunks']} |" for s in facts["specialists"]]
    hist = " ".join(str(n) for n in f1["specialist_histogram"])
    lines += [
        "", "## F1 (per-step key-press F1 averaged over an episode)", "",
        f"- episodes: mean {f1['episode_mean']:.3f}, median {f1['episode_median']:.3f}, "
        f"{100 * f1['episode_share_above_0.75']:.2f}% above 0.75",
        f"- specialists (mean over a chunk's episodes): {100 * f1['specialist_share_above_0.75']:.2f}% above 0.75 "
        "(RP1M section 4.3 reports 79.00% of its agents)",
        f"- specialists per F1 decile 0-0.1 ... 0.9-1.0: {hist}", "",
        "## Layout of a step", "",
        "observation (dict; flat order for policies as listed, "
        f"{sum(facts['observation'].values())} values):", "",
    ]
    lines += [f"- `{k}`: {n}" for k, n in facts["observation"].items()]
    lines += [
        "", f"action: 39 floats in [-1, 1] scaled to the actuators' ranges; {ACTION_LAYOUT}.", "",
        "Also per step: `reward` (sum of the weighted terms `reward_fingering`, `reward_press`, `reward_sustain`, "
        "`reward_collision`, `reward_energy`, `reward_mimic`), `pressed_keys` (88), `sustain_pressed`, "
        "`ot_key_for_finger` (10, -1 idle); per episode: `song_id`, `chunk_id`, `chunk_index`, `rollout_seed`, "
        "`specialist_id`, `fingering_mode`, `precision`, `recall`, `f1`, `n_steps`.", "",
        "## Reading it", "", "```python", "import tensorflow_datasets as tfds",
        f"ds = tfds.builder_from_directory('{shards_dir}/<song_id>/{facts['version']}').as_dataset(split='train')",
        f"many = tfds.builder_from_directories([f'{shards_dir}/{{s}}/{facts['version']}' for s in song_ids])"
        ".as_dataset(split='train')",
        "```", "", "`pianoset pull --rev <tag> --songs <id>,<id>` fetches only those songs of a version.", "",
        "## Songs", "", "| song_id | source | ref | chunks | episodes | steps | mean F1 |", "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['song_id']} | {r['source']} | {r['ref']} | {r['chunks']} | {r['episodes']} | {r['steps']} | "
              f"{r['mean_f1']:.3f} |" for r in facts["songs"]]
    return "\n".join(lines) + "\n"


def write_card(root: Path, params: dict, songs: list[tuple[Path, Manifest]] | None = None) -> Path:
    """Write `datasets/DATASET.md` of the repository `root` from its collection (params: load_params)."""
    from envs import atomic

    collect = params["collect"]
    shards_dir = collect["shards_dir"]
    facts = card_facts(root / shards_dir, root / collect["specialists_dir"], root / "datasets/catalog",
                       root / collect["work_dir"], songs=songs)
    path = root / "datasets" / CARD_NAME
    atomic.write_text(path, render_card(facts, shards_dir))
    return path
