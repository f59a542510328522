"""Tables and plot of the repertoire quality benchmark (benchmarks/specialist_quality.py).

`render_report(results, ...)` gives markdown: the chunks and their
character, per variant (kind at one physics timestep) a per-chunk table
(stored and noise-free P/R/F1, CPU-seconds, missed notes by cause), the
causes in the stored rollouts, and the RP1M-style summary (median F1, share
of chunks above 0.75) per variant and set, dev and holdout apart.
`plot_distribution` draws the F1 of every chunk per variant and set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

F1_TARGET = 0.75  # RP1M section 4.3
SETS = ("dev", "holdout", "extra")
CAUSE_COLUMNS = (("beyond_reach_speed", "reach/speed"), ("wrong_neighbour", "neighbour"), ("jam", "jam"),
                 ("late", "late"), ("never_reached", "unreached"), ("other", "other"))


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def variants(results: list[dict], kinds: list[str] | None = None) -> list[tuple[str, float]]:
    """(kind, physics timestep) pairs present in `results`, in `kinds` order, then by timestep."""
    kinds = kinds or list(dict.fromkeys(r["kind"] for r in results))
    present = {(r["kind"], r["physics_timestep"]) for r in results}
    return [(k, dt) for k in kinds for dt in sorted({d for kk, d in present if kk == k})]


def _label(variant: tuple[str, float]) -> str:
    return f"{variant[0]} @ {variant[1]:g} s"


def _by_set(results: list[dict], variant: tuple[str, float]) -> dict[str, list[dict]]:
    out = {}
    for name in SETS:
        rows = [r for r in results if (r["kind"], r["physics_timestep"]) == variant and r["set"] == name]
        if rows:
            out[name] = rows
    return out


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else "0"


def _false(counts: dict) -> str:
    parts = "/".join(str(counts[k]) for k in ("held_past_note", "early", "neighbour", "other"))
    return f"{parts} ({counts['not_by_fingertip']})" if "not_by_fingertip" in counts else parts


def _cpu(value) -> str:
    """CPU-seconds, or '-' where none was measured (rollouts reused from an earlier run)."""
    return "-" if value is None or value == 0 else f"{value:.0f}"


def _mean_known(values: list) -> float | None:
    """Mean of the measured values; None where none was (0 or None: reused rollouts, never measured)."""
    known = [v for v in values if v]
    return round(float(np.mean(known)), 1) if known else None


def summary(results: list[dict]) -> list[dict]:
    """Per (kind, physics timestep, set): chunks, median F1 and share above F1_TARGET (stored, noise-free),
    missed notes by cause, CPU-seconds."""
    rows = []
    for kind, dt in variants(results):
        for name, group in _by_set(results, (kind, dt)).items():
            stored = np.array([r["stored"]["f1"] for r in group])
            clean = np.array([r["noise_free"]["f1"] for r in group])
            causes = {c: sum(r["failures"]["noise_free"]["causes"][c] for r in group) for c, _ in CAUSE_COLUMNS}
            rows.append({"kind": kind, "physics_timestep": dt, "set": name, "chunks": len(group),
                         "median_f1_stored": round(float(np.median(stored)), 4),
                         "share_above_target_stored": round(float(np.mean(stored > F1_TARGET)), 4),
                         "median_f1_noise_free": round(float(np.median(clean)), 4),
                         "share_above_target_noise_free": round(float(np.mean(clean > F1_TARGET)), 4),
                         "notes": sum(r["failures"]["noise_free"]["n_notes"] for r in group),
                         "missed": sum(r["failures"]["noise_free"]["n_missed"] for r in group),
                         "causes_noise_free": causes,
                         "fit_cpu_s": round(sum(r["cpu_s"]["fit"] for r in group), 1),
                         "fit_cpu_s_per_chunk": round(float(np.mean([r["cpu_s"]["fit"] for r in group])), 1),
                         "rollout_cpu_s_per_chunk": _mean_known([r["cpu_s"]["rollouts"] for r in group])})
    return rows


def render_report(results: list[dict], chunks: list, kinds: list[str], timesteps: list[float], n_rollouts: int,
                  profile=None) -> str:
    settings = (f"physics timestep {', '.join(f'{dt:g}' for dt in timesteps)} s, {n_rollouts} stored rollouts "
                "per chunk")
    if profile is not None:
        settings += f", trained kinds: profile {profile.name} ({profile.total_steps} env steps)"
    parts = [f"# Specialist quality ({settings})", ""]
    first = {}
    for r in results:
        first.setdefault(r["spec"], r)
    rows = []
    for entry in chunks:
        r = first.get(entry.spec)
        if r is None:
            continue
        c = r["character"]
        rows.append([entry.set, entry.spec, c["steps"], c["onsets_per_s"], f"{c['max_keys']}/{c['mean_keys']}",
                     "-".join(map(str, c["range_keys"])), c["max_span_keys"], c["octave_jumps"], entry.why])
    parts += ["## Chunks", "", "keys: most / mean keys down at once; span: widest keys at one step (key indices); "
              "8va jumps: lowest onset key moving an octave or more within 0.4 s.", "",
              _table(["set", "chunk", "steps", "onsets/s", "keys", "range", "span", "8va jumps", "why"], rows), ""]
    for variant in variants(results, kinds):
        groups = _by_set(results, variant)
        parts += [f"## {_label(variant)}: per chunk", "",
                  "F1 stored: mean (sd) over the stored rollouts; P, R: stored means; missed notes and causes: the "
                  "noise-free run (cause definitions: envs/piano/failure.py); not asg / sched / cmd / IK: missed notes the "
                  "plan gave no finger / never scheduled / never commanded down (the IK had not aligned the "
                  "finger) / the IK never put down; false presses: "
                  "key-steps down outside the goal (held past the note / early / next to a goal key / other; "
                  "in brackets: with no fingertip over the key).", ""]
        header = ["set", "chunk", "F1 stored", "F1 noise-free", "P", "R", "fit CPU-s", "rollout CPU-s", "missed/notes",
                  *[c for _, c in CAUSE_COLUMNS], "not asg", "not sched", "not cmd", "not IK", "false presses"]
        rows = []
        for name, group in groups.items():
            for r in group:
                f = r["failures"]["noise_free"]
                rows.append([name, r["spec"], f"{r['stored']['f1']:.3f} ({r['stored']['f1_sd']:.3f})",
                             f"{r['noise_free']['f1']:.3f}", f"{r['stored']['precision']:.3f}",
                             f"{r['stored']['recall']:.3f}", f"{r['cpu_s']['fit']:.0f}",
                             _cpu(r["cpu_s"]["rollouts"]),
                             f"{f['n_missed']}/{f['n_notes']}", *[f["causes"][c] for c, _ in CAUSE_COLUMNS],
                             *[f["flags"].get(f"not_{p}", "-") for p in ("assigned", "scheduled", "commanded", "ik")],
                             _false(f["false_presses"])])
        parts += [_table(header, rows), ""]
        parts += [f"## {_label(variant)}: causes in the stored rollouts (summed over seeds)", "",
                  "Share of the missed notes; flags count every condition that held (a note can have several).", ""]
        header = ["set", "chunk", "missed/notes", *[c for _, c in CAUSE_COLUMNS], "other: not pressed/short",
                  "flag neighbour", "flag jam", "flag late", "flag unreached"]
        rows = []
        for name, group in groups.items():
            for r in group:
                f = r["failures"]["stored"]
                m = f["n_missed"]
                rows.append([name, r["spec"], f"{m}/{f['n_notes']}",
                             *[f"{100 * f['causes'][c] / m:.0f}%" if m else "-" for c, _ in CAUSE_COLUMNS],
                             f"{f['other_detail']['not_pressed']}/{f['other_detail']['short']}",
                             *[f["flags"][k] for k in ("wrong_neighbour", "jam", "late", "never_reached")]])
        parts += [_table(header, rows), ""]
    rows = []
    for s in summary(results):
        missed = s["missed"]
        causes = ", ".join(f"{label} {100 * s['causes_noise_free'][c] / missed:.0f}%" for c, label in CAUSE_COLUMNS
                           if missed and s["causes_noise_free"][c])
        rows.append([s["kind"], f"{s['physics_timestep']:g}", s["set"], s["chunks"], f"{s['median_f1_stored']:.3f}",
                     f"{100 * s['share_above_target_stored']:.0f}%", f"{s['median_f1_noise_free']:.3f}",
                     f"{100 * s['share_above_target_noise_free']:.0f}%", f"{missed}/{s['notes']}", causes,
                     f"{s['fit_cpu_s_per_chunk']:.0f}", _cpu(s["rollout_cpu_s_per_chunk"])])
    parts += ["## Summary (RP1M: 79% of 2,089 specialists above F1 0.75)", "",
              "fit / rollout CPU-s: mean per chunk (process CPU time, one core; fit = planning + training; rollout "
              "'-': rollouts reused from an earlier run, not measured).", "",
              _table(["kind", "dt s", "set", "chunks", "median F1 stored", "> 0.75 stored", "median F1 noise-free",
                      "> 0.75 noise-free", "missed/notes (noise-free)", "causes (noise-free)", "fit CPU-s",
                      "rollout CPU-s"], rows), ""]
    return "\n".join(parts)


def plot_distribution(results: list[dict], kinds: list[str], path: Path) -> None:
    """F1 of every chunk per variant (kind @ timestep): stored (filled) and noise-free (open), dev and
    holdout side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = variants(results, kinds)
    if not groups:
        return
    fig, ax = plt.subplots(figsize=(2.4 + 1.8 * len(groups), 4.2))
    colors = {"dev": "tab:blue", "holdout": "tab:orange", "extra": "tab:gray"}
    rng = np.random.default_rng(0)  # horizontal jitter only
    for i, variant in enumerate(groups):
        for j, (name, group) in enumerate(_by_set(results, variant).items()):
            x = i + (j - 0.5) * 0.35 + rng.uniform(-0.06, 0.06, len(group))
            ax.scatter(x, [r["stored"]["f1"] for r in group], color=colors[name], s=22,
                       label=f"{name} stored" if i == 0 else None)
            ax.scatter(x, [r["noise_free"]["f1"] for r in group], facecolors="none", edgecolors=colors[name], s=22,
                       label=f"{name} noise-free" if i == 0 else None)
            stored = [r["stored"]["f1"] for r in group]
            ax.hlines(np.median(stored), i + (j - 0.5) * 0.35 - 0.12, i + (j - 0.5) * 0.35 + 0.12, color="k")
    ax.axhline(F1_TARGET, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(groups)), [_label(v) for v in groups])
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 per chunk")
    ax.set_title("F1 distribution (line: median stored; dashed: 0.75)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
