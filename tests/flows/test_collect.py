"""The collection flow for real: Prefect (its temporary server), child processes,
SIGTERM and kill -9 and resume (no orphan process left), a corrupt song among good ones,
a no-op rerun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pretty_midi
import psutil
import pytest

from flows.server import is_owned_server
from tasks.rlds import is_complete, read_manifest

REPO = Path(__file__).resolve().parents[2]
N_ROLLOUTS = 4


def _song(path: Path, pitches: list[int]) -> Path:
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i, pitch in enumerate(pitches):
        piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=0.4 * i, end=0.4 * i + 0.35))
    pm.instruments.append(piano)
    pm.write(str(path))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect")
    songs = [_song(root / "good_a.mid", [60, 62, 64, 65, 67]), _song(root / "good_b.mid", [48, 52, 55, 60])]
    bad = root / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")  # a header cut short
    return root, [str(s) for s in songs], str(bad)


def _cmd(project, extra=()):
    root, good, bad = project
    args = [sys.executable, "-m", "flows.cli", "collect", "--rollouts", str(N_ROLLOUTS), "--workers", "1",
            "--work-dir", str(root / "work"), "--shards-dir", str(root / "shards"), "--no-register", "--json"]
    for song in [*good, bad]:
        args += ["--song", song]
    return [*args, *extra]


def _env(project):
    root = project[0]
    return {**os.environ, "MUJOCO_GL": "osmesa", "PREFECT_HOME": str(root / "prefect"),
            "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(project):
    proc = subprocess.run(_cmd(project), cwd=project[0], env=_env(project), capture_output=True, text=True,
                          timeout=1200)
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout[start:])


def _status(project) -> list[dict]:
    """`pianoset status --json` on the project's folders: its song rows."""
    root = project[0]
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--work-dir", str(root / "work"),
                           "--shards-dir", str(root / "shards"), "--json"], cwd=root, env=_env(project),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.find("{"):])["songs"]


def _session_processes(sid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return out


def _signal_when(project, condition, signum, timeout=600) -> tuple[int, float]:
    """Start the collection, send `signum` to the `pianoset` process alone (not its group) once
    `condition()` holds; return its exit code and how long it took to exit."""
    proc = subprocess.Popen(_cmd(project), cwd=project[0], env=_env(project), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not condition():
        time.sleep(0.05)
    assert proc.poll() is None, "the collection finished before it could be signalled"
    assert any(is_owned_server(p, _env(project)["PREFECT_HOME"]) for p in _session_processes(proc.pid))
    sent = time.time()
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
    waited = time.time() - sent
    assert_nothing_left(proc.pid)
    return code, waited


def assert_nothing_left(sid: int) -> None:
    """Nothing of the run lives on: no temporary Prefect server, no specialist or rollout child."""
    for _ in range(100):
        left = _session_processes(sid)
        if not left:
            break
        time.sleep(0.1)
    assert not left, [" ".join(p.cmdline())[:120] for p in left]


def _song_dirs(project):
    root = project[0]
    return sorted(p for p in (root / "shards").iterdir() if not p.name.startswith(".")) if (root / "shards").exists() else []


def _assert_exact_episodes(song_dir: Path):
    manifest = read_manifest(song_dir, verify=True)
    seeds = sorted((e.chunk_id, e.rollout_seed) for e in manifest.episodes)
    assert len(seeds) == len(set(seeds)) == manifest.n_episodes
    assert {s for _, s in seeds} == set(range(N_ROLLOUTS))


def test_sigterm_during_training_stops_cleanly_then_resume_completes(project):
    root = project[0]

    def checkpoint_written():  # by a specialist still training
        return any(not (d / "specialist.json").exists() and any(d.glob("checkpoints/step_*/COMMITTED.json"))
                   for d in root.glob("work/*/*/specialist"))

    code, waited = _signal_when(project, checkpoint_written, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and waited < 15
    # Nothing half-written is visible as done: a specialist marked done finished its budget, and
    # one was stopped mid-way with a checkpoint (saved on SIGTERM or before).
    done = [json.loads(p.read_text()) for p in root.glob("work/*/*/specialist/specialist.json")]
    assert all(m["steps"] == 240 for m in done) and len(done) < 2
    assert any(root.glob("work/*/*/specialist/checkpoints/step_*/COMMITTED.json"))
    assert all(not is_complete(d) for d in _song_dirs(project))
    # `pianoset status` after the stop: the two good songs are partial, with their chunk progress.
    rows = _status(project)
    assert sorted(r["status"] for r in rows) == ["partial", "partial"]
    assert sum(r["trained"] for r in rows) == len(done) and all(r["chunks"] >= 1 for r in rows)
    assert all(r["rolled_out"] <= r["trained"] <= r["chunks"] for r in rows)

    code, summary = _run(project)
    assert code == 3  # partial: the broken song failed, the others are done
    songs = summary["songs"]
    assert songs[project[2]]["status"] == "failed" and songs[project[2]]["stage"] == "prepare"
    assert "broken.mid" in songs[project[2]]["error"]
    for ref in project[1]:
        assert songs[ref]["status"] == "done"
    assert summary["tasks_run"]["train"] + summary["tasks_reused"]["train"] == 2
    resumed = [json.loads(p.read_text())["resumed_from_step"]
               for p in root.glob("work/*/*/specialist/specialist.json")]
    assert any(step for step in resumed), "the killed specialist should resume from its checkpoint"
    assert len(_song_dirs(project)) == 2
    for song_dir in _song_dirs(project):
        _assert_exact_episodes(song_dir)
    rows = {r["song_id"]: r for r in _status(project)}
    for song_dir in _song_dirs(project):
        row = rows[song_dir.name]
        assert row["status"] == "done" and row["trained"] == row["rolled_out"] == row["chunks"] >= 1
        assert row["episodes"] == N_ROLLOUTS * row["chunks"]


def test_second_run_executes_nothing(project):
    code, summary = _run(project)
    assert code == 3
    assert summary["tasks_run"] == {"train": 0, "rollout": 0, "write": 0}
    assert summary["tasks_reused"]["train"] == 2 and summary["tasks_reused"]["write"] == 2
    assert summary["counts"] == {"done": 0, "cached": 2, "failed": 1}


def test_kill_while_writing_shards_then_resume(project):
    root = project[0]
    victim = _song_dirs(project)[0]
    # Force the song to be written again, and kill the flow while it writes.
    (root / "work" / victim.name / "shards.key").unlink()

    def writing():
        return any((root / "shards").glob(f".{victim.name}.staging-*"))

    code, _ = _signal_when(project, writing, signal.SIGKILL)  # the children die with it, the server too
    assert code == -signal.SIGKILL
    assert is_complete(victim)  # the old complete folder (or the new one, swapped whole) is there
    _assert_exact_episodes(victim)
    code, summary = _run(project)
    assert code == 3 and summary["tasks_run"]["write"] == 1 and summary["tasks_run"]["train"] == 0
    _assert_exact_episodes(victim)
    leftovers = [p.name for p in (root / "shards").iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
