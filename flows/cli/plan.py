"""`pianoset collect --plan`: the plan of a collection (tasks/plan.py) as a table or JSON."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from flows.cli.common import emit_json, out


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def show_plan(config, catalog_dir: Path, as_json: bool) -> None:
    from tasks.plan import collection_plan

    plan = collection_plan(config, catalog_dir)
    if as_json:
        emit_json(plan)
        return
    table = Table(title=f"plan: {len(plan['songs'])} songs, {config.specialist} specialist, {config.profile} budget, "
                        f"{config.rollouts} rollouts/chunk")
    for col in ("song", "song_id", "chunks", "steps", "train", "rollout", "shards"):
        table.add_column(col)
    for s in plan["songs"][:50]:
        if s["status"] == "unloadable":
            table.add_row(s["ref"], "-", "-", "-", "-", "-", f"[red]{s['error'][:60]}[/red]")
            continue
        table.add_row(s["ref"], s["song_id"], str(s["chunks"]), str(s["steps"]), f"{s['train']} to run",
                      f"{s['rollout']} to run", "reuse" if s["status"] == "reuse" else "write")
    out.print(table)
    if len(plan["songs"]) > 50:
        out.print(f"... and {len(plan['songs']) - 50} more songs (--json lists all)")
    t, e = plan["totals"], plan["estimate"]
    tasks = ", ".join(f"{stage} {v['run']} run / {v['reuse']} reused" for stage, v in t["tasks"].items())
    out.print(f"{t['songs']} songs ({t['unloadable']} unloadable), {t['chunks']} chunks, {t['episodes']} episodes, "
              f"{t['stored_steps']} stored steps; tasks: {tasks}")
    out.print(f"estimated CPU: {e['cpu_hours']:.2f} CPU-hours ({', '.join(f'{k} {v:.0f} s' for k, v in e['cpu_s_by_stage'].items())}); "
              f"wall on 2 free cores ~{e['wall_hours_at']['2_cores']:.2f} h")
    out.print(f"disk: {_size(e['disk_bytes_new'])} new shards ({e['bytes_per_step']:.0f} bytes/step), "
              f"{_size(e['disk_bytes_total'])} in all" + ("" if e["measured"] else
                                                          "; [yellow]costs of this budget are extrapolated[/yellow]"))
