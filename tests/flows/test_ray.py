"""Scale-out for real: a local Ray cluster on 127.0.0.1 and a real Prefect server
on loopback; `pianoset collect --runner ray` runs its tasks on the cluster."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pretty_midi
import pytest

from tasks.rlds import read_manifest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "RAY_USAGE_STATS_ENABLED": "0",
           "MUJOCO_GL": "osmesa", "TF_CPP_MIN_LOG_LEVEL": "2"}
    ray_port, api_port = _free_port(), _free_port()
    subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={ray_port}",
                    "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={root / 'ray-tmp'}"], env=env, check=True, capture_output=True, timeout=180)
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(api_port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{api_port}/api"
    try:
        _wait_http(f"{api}/health", 240)
        yield root, f"127.0.0.1:{ray_port}", api, env
    finally:
        server.terminate()
        server.wait(timeout=60)
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root / "ray-tmp", ignore_errors=True)


def test_collect_on_a_local_ray_cluster(cluster):
    root, address, api, env = cluster
    song = root / "song.mid"
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(velocity=80, pitch=p, start=0.4 * i, end=0.4 * i + 0.3)
                    for i, p in enumerate([60, 64, 67, 72])]
    pm.instruments.append(piano)
    pm.write(str(song))
    cmd = [sys.executable, "-m", "flows.cli", "collect", "--song", str(song), "--runner", "ray",
           "--address", address, "--rollouts", "4", "--workers", "1", "--work-dir", str(root / "work"),
           "--shards-dir", str(root / "shards"), "--no-register", "--json"]
    proc = subprocess.run(cmd, cwd=root, env={**env, "PREFECT_API_URL": api, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=1200)
    start = proc.stdout.find("{")
    assert proc.returncode == 0 and start >= 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[start:])
    assert summary["counts"]["done"] == 1
    assert summary["tasks_run"] == {"train": 1, "rollout": 1, "write": 1}
    (record,) = summary["songs"].values()
    assert read_manifest(Path(record["shards"]), verify=True).n_episodes == 4
    # The flow run and its task runs are on the real server, not an ephemeral one.
    with urllib.request.urlopen(urllib.request.Request(
            f"{api}/task_runs/count", data=b"{}", headers={"Content-Type": "application/json"}), timeout=10) as r:
        assert int(r.read()) >= 4  # prepare, train, rollout, write
    # The heavy tasks ran as Ray tasks (in Ray workers), not in the flow's process.
    assert {e["stage"] for e in summary["executors"]} == {"train", "rollout"}
    assert all(e["executor"].startswith("ray-task:") for e in summary["executors"]), summary["executors"]
