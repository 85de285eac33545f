"""The Ray executor on a real Ray cluster: a head and a worker node started with `ray start` on this
machine (1 CPU each, no GPU), driven by real `llm-energy sweep --executor ray` processes."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_energy.compat import shield_broken_amdsmi
from llm_energy.store import Store

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed", allow_module_level=True)

pytestmark = pytest.mark.slow

SIM_SPEC = """\
name: ray-sim
models: [sim]
engines: [{engine: simulated, max_batch_size: 16, crash_at_batch_size: 8}]
batch_sizes: [1, 8, 16]
input_lens: [128]
output_lens: [32]
window_s: 1.0
idle_s: 0.5
device: cpu
"""

HF_CPU_SPEC = """\
name: ray-hf-cpu
models: [tiny]
engines: [{engine: hf, mode: eager}]
batch_sizes: [1]
input_lens: [16]
output_lens: [4]
window_s: 0.3
idle_s: 0.3
device: cpu
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_sessions(sessions: list[int]) -> None:
    """SIGKILL every process of the sessions our `ray start` commands lead (and nothing else)."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getsid(pid) in sessions:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (address, environment) of a two-node Ray cluster; every process of it is killed after."""
    tmp = tmp_path_factory.mktemp("ray")
    (tmp / "home").mkdir()
    # A fresh HOME: a token file left in ~/.ray makes the GCS expect auth tokens that clients in
    # Ray's default (no-auth) mode do not send.
    env = {**os.environ, **shield_broken_amdsmi(), "HOME": str(tmp / "home")}
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    node = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--block", "--node-ip-address=127.0.0.1"]
    head = [ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}"]
    procs = [subprocess.Popen([*head, *node], env=env, start_new_session=True, stdout=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.2)
        worker = [ray_cli, "start", f"--address=127.0.0.1:{port}", *node]
        procs.append(subprocess.Popen(worker, env=env, start_new_session=True, stdout=subprocess.DEVNULL))
        yield f"127.0.0.1:{port}", env
    finally:
        _kill_sessions([p.pid for p in procs])
        for p in procs:
            p.wait(timeout=30)


def _sweep(
    tmp_path: Path, cluster: tuple[str, dict[str, str]], spec: str
) -> subprocess.CompletedProcess[str]:
    address, env = cluster
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec)
    cmd = [sys.executable, "-m", "llm_energy", "sweep", str(spec_path), "--db", str(tmp_path / "runs.db")]
    cmd += ["--executor", "ray", "--address", address]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)


def test_cpu_points_run_on_the_cluster_a_killed_worker_is_an_error_and_a_rerun_resumes(tmp_path, cluster):
    """Simulated CPU points ask Ray for no GPU: they run on the GPU-less cluster. A worker killed
    mid-point becomes an error result and the group goes on with a fresh worker; a rerun measures
    nothing again."""
    first = _sweep(tmp_path, cluster, SIM_SPEC)
    assert first.returncode == 1, first.stderr  # the killed worker's point is an error
    with Store(tmp_path / "runs.db", read_only=True) as store:
        by_batch = {r.config["batch_size"]: r for r in store.read_runs()}
        assert Counter(r.config["point_id"] for r in store.read_runs()).most_common(1)[0][1] == 1
    assert by_batch[1].status == "ok" and by_batch[16].status == "ok"
    assert by_batch[16].phases["decode"].energy_j > 0
    assert by_batch[8].status == "error" and "worker died" in (by_batch[8].error or "")
    again = _sweep(tmp_path, cluster, SIM_SPEC)
    assert "0 measured" in again.stdout and "3 already stored" in again.stdout


def test_a_real_engine_on_the_cpu_runs_instead_of_waiting_for_a_gpu(tmp_path, cluster):
    """The hf engine with device: cpu on a cluster without GPUs: its actor used to ask for a GPU and
    wait forever; now it runs and stores an ok run (energy estimated: no GPU, no RAPL here)."""
    done = _sweep(tmp_path, cluster, HF_CPU_SPEC)
    assert done.returncode == 0, done.stderr
    with Store(tmp_path / "runs.db", read_only=True) as store:
        (run,) = store.read_runs()
    assert run.status == "ok" and run.config["device"] == "cpu"


def test_points_needing_more_gpus_than_the_cluster_has_are_refused_up_front(tmp_path, cluster):
    done = _sweep(tmp_path, cluster, HF_CPU_SPEC.replace("device: cpu", "device: cuda"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert "needs 1 GPU(s), but no node of the Ray cluster has more than 0" in line
    with Store(tmp_path / "runs.db", read_only=True) as store:
        assert store.count_runs() == 0
