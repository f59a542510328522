"""The table (RP1M Table 2) recomputed from the saved evaluation episodes: table.md, table.csv, bars.png."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from envs import atomic
from tasks.benchmark.config import (
    GROUP_TITLES,
    GROUPS,
    PLAN_FORMAT,
    RP1M_METHODS,
    RP1M_TABLE2,
    BenchmarkConfig,
    read_json,
    write_json,
)
from tasks.policy_eval import (
    read_records,
    recompute_episodes,
    summarize,
)

log = logging.getLogger(__name__)


def write_plan(reports_dir: str | Path, plan: dict, cells: list[dict], config: BenchmarkConfig) -> Path:
    """plan.json: the table's layout, each cell pointing at its evaluation record and key."""
    path = Path(reports_dir) / "plan.json"
    write_json(path, {
        "format": PLAN_FORMAT,
        "methods": [m.as_dict() for m in config.scaled_methods()],
        "profile": config.profile,
        "steps": config.train_steps,
        "seed": config.seed,
        "eval": config.eval.as_dict(),
        "train_sets": [[Path(d).name for d in s] for s in plan["train_sets"]],
        "groups": {g: {"songs": plan["group_songs"][g], "episodes": len(items)} for g, items in plan["groups"].items()},
        "cells": cells,
    })
    return path


def build_table(reports_dir: str | Path) -> dict:
    """The benchmark table rebuilt from plan.json and the saved evaluation episodes.

    Every cell's precision/recall/F1 are recomputed from the stored per-step
    goal and pressed keys (`recompute_episodes`, which also checks them against
    the stored per-episode figures) and averaged over the group's episodes.
    A cell whose record is missing or stale (key mismatch) is None.
    """
    reports_dir = Path(reports_dir)
    plan = read_json(reports_dir / "plan.json")
    if plan is None or plan.get("format") != PLAN_FORMAT:
        raise FileNotFoundError(f"{reports_dir}: no benchmark plan.json (run `pianoset benchmark`)")
    labels = [m["label"] for m in plan["methods"]]
    rows: dict[tuple[str, int], dict] = {}
    for group in GROUPS:
        if group not in plan["groups"]:
            continue
        for train_set in plan["train_sets"]:
            rows[(group, len(train_set))] = {
                "group": group, "title": GROUP_TITLES[group], "train_songs": len(train_set),
                "eval_songs": len(plan["groups"][group]["songs"]), "episodes": plan["groups"][group]["episodes"],
                "cells": {label: None for label in labels},
            }
    for cell in plan["cells"]:
        row = rows.get((cell["group"], cell["train_songs"]))
        if row is None:
            continue
        path = reports_dir / cell["records"]
        doc = read_records(path)
        if doc is None or doc.get("key") != cell["key"]:
            continue
        row["cells"][cell["method"]] = {**summarize(recompute_episodes(path)), "policy_key": cell["policy_key"]}
    return {"methods": labels, "profile": plan["profile"], "steps": plan["steps"], "seed": plan["seed"],
            "eval": plan["eval"], "rows": list(rows.values())}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def table_markdown(table: dict) -> str:
    labels = table["methods"]
    ev = table["eval"]
    lines = [
        "# Policy benchmark (RP1M Table 2)",
        "",
        f"F1 of one multi-song policy per method and training set, averaged over the evaluation episodes of each "
        f"group (per-step key-press F1 averaged over an episode's steps). Training: profile `{table['profile']}`, "
        f"{table['steps']:,} steps, seed {table['seed']}. Evaluation: "
        f"{'every' if ev['max_chunks_per_song'] is None else 'the first ' + str(ev['max_chunks_per_song'])} "
        f"chunk(s) per song, {ev['episodes_per_chunk']} episode(s) per chunk, "
        f"{'whole chunks' if ev['max_steps'] is None else 'the first ' + str(ev['max_steps']) + ' steps of each'}.",
        "Precision and recall: `table.csv`; every episode: `episodes/<policy_key>/<group>.json`.",
        "",
        "| Task | #songs | eval songs / episodes | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    for row in table["rows"]:
        cells = [_fmt(c["f1"] if c else None) for c in row["cells"].values()]
        lines.append(f"| {row['title']} | {row['train_songs']} | {row['eval_songs']} / {row['episodes']} | "
                     + " | ".join(cells) + " |")
    rp1m = [m.label for m in RP1M_METHODS]
    lines += ["", "RP1M Table 2 (reference; trained 1M steps on 50/150/300 RP1M songs):", "",
              "| Task | #songs | " + " | ".join(rp1m) + " |", "|---|---|" + "---|" * len(rp1m)]
    for group, by_size in RP1M_TABLE2.items():
        for size, values in by_size.items():
            lines.append(f"| {GROUP_TITLES[group]} | {size} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += ["", "![F1 per group and method](bars.png)", ""]
    return "\n".join(lines)


def table_csv(table: dict) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["group", "train_songs", "eval_songs", "episodes"]
    for label in table["methods"]:
        header += [f"{label} f1", f"{label} precision", f"{label} recall"]
    writer.writerow(header)
    for row in table["rows"]:
        line = [row["group"], row["train_songs"], row["eval_songs"], row["episodes"]]
        for cell in row["cells"].values():
            line += ["" if cell is None else repr(cell[k]) for k in ("f1", "precision", "recall")]
        writer.writerow(line)
    return buffer.getvalue()


def _bars_figure(table: dict):
    from matplotlib.figure import Figure

    labels, rows = table["methods"], table["rows"]
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) * max(1, len(labels)) * 0.35 + 2), 4.0), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(rows))
    for k, label in enumerate(labels):
        values = [(row["cells"][label] or {}).get("f1") for row in rows]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (k - (len(labels) - 1) / 2) * width, heights, width, label=label)
        for bar, value in zip(bars, values):
            if value is None:
                bar.set_hatch("//")
                bar.set_alpha(0.3)
    ax.set_xticks(x, [f"{row['title']}\n{row['train_songs']} songs" for row in rows])
    ax.set_ylabel("F1 (mean over episodes)")
    ax.set_ylim(0, 1)
    ax.set_title(f"Multi-song imitation ({table['profile']}, {table['steps']:,} steps)", fontsize=10)
    ax.legend(fontsize=8, ncols=min(3, len(labels)))
    return fig


def write_reports(reports_dir: str | Path) -> list[Path]:
    """table.md, table.csv and bars.png rebuilt from the saved records (each written atomically)."""
    reports_dir = Path(reports_dir)
    table = build_table(reports_dir)
    texts = {"table.md": table_markdown(table), "table.csv": table_csv(table)}
    written = []
    for name, text in texts.items():
        written.append(atomic.write_text(reports_dir / name, text))
    figure = _bars_figure(table)
    written.append(atomic.write_with(reports_dir / "bars.png", lambda tmp: figure.savefig(tmp, format="png", dpi=110)))
    return written


# ----------------------------------------------------------------------------- Prefect tasks
