"""Server lifecycle with real child processes: health wait, log tail, group kill, signals, death mid-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from llm_energy.architectures import load_architecture
from llm_energy.errors import ConfigError, EngineError
from llm_energy.records import Request
from llm_energy.serving.replay_run import replay_servers
from llm_energy.serving.servers import LaunchSpec, ServerGroup, ServerProcess, launch_servers
from llm_energy.serving.servers.stub import stub_server
from llm_energy.serving.servers.vllm import VllmServerConfig, vllm_command, vllm_server


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _child_pid(log: Path) -> int:
    for _ in range(100):
        match = re.search(r"stub child pid (\d+)", log.read_text() if log.exists() else "")
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no child pid in {log}")


def _wait_dead(*pids: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_started_server_is_healthy_in_its_own_group_and_stop_kills_the_group(tmp_path):
    """Normal exit: the server and the grandchild it spawned are both gone afterwards."""
    server = stub_server(extra_args=["--spawn-child"], log_path=tmp_path / "stub.log")
    with ServerGroup([server]) as (started,):
        pid = started.pid
        assert pid is not None and _alive(pid)
        assert os.getpgid(pid) == pid != os.getpgid(0)  # its own process group
        child = _child_pid(tmp_path / "stub.log")
        assert _alive(child) and os.getpgid(child) == pid
        assert started.url.startswith("http://127.0.0.1:") and started.exit_reason() is None
    assert _wait_dead(pid, child)


def test_an_exception_inside_the_block_still_stops_everything(tmp_path):
    server = stub_server(extra_args=["--spawn-child"], log_path=tmp_path / "stub.log")
    with pytest.raises(RuntimeError, match="boom"), ServerGroup([server]):
        child = _child_pid(tmp_path / "stub.log")
        raise RuntimeError("boom")
    assert server.pid is not None
    assert _wait_dead(server.pid, child)


def test_a_server_that_exits_at_start_raises_with_its_log_tail(tmp_path):
    server = stub_server(extra_args=["--exit-at-start"], log_path=tmp_path / "stub.log")
    with pytest.raises(EngineError, match=r"exited with code 4(.|\n)*injected start-up failure"):
        server.start()


def test_a_server_never_healthy_times_out_and_is_killed(tmp_path):
    argv = [sys.executable, "-c", "print('loading forever', flush=True); import time; time.sleep(600)"]
    server = ServerProcess(
        "sleeper", lambda port: LaunchSpec(argv), server_kind="openai", startup_timeout_s=1.5, grace_s=1.0
    )
    with pytest.raises(EngineError, match=r"not healthy(.|\n)*loading forever"):
        server.start()
    assert server.pid is not None and _wait_dead(server.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_of_the_driver_leaves_no_orphan(tmp_path, sig):
    """A driver process running a ServerGroup is signalled: server and grandchild go with it."""
    info = tmp_path / "pids.json"
    script = textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from llm_energy.serving.servers import ServerGroup
        from llm_energy.serving.servers.stub import stub_server
        log = Path({str(tmp_path / "stub.log")!r})
        with ServerGroup([stub_server(extra_args=["--spawn-child"], log_path=log)]) as (s,):
            while "child pid" not in log.read_text():
                time.sleep(0.05)
            child = int(log.read_text().split("stub child pid ")[1].split()[0])
            Path({str(info)!r}).write_text(json.dumps([s.pid, child]))
            time.sleep(600)
        """
    )
    err = tmp_path / "driver.err"
    with err.open("wb") as fh:
        driver = subprocess.Popen([sys.executable, "-c", script], stderr=fh)
    deadline = time.monotonic() + 30
    while not info.exists() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert info.exists(), err.read_text()
    server_pid, child_pid = json.loads(info.read_text())
    assert _alive(server_pid) and _alive(child_pid)
    driver.send_signal(sig)
    driver.wait(timeout=30)
    assert _wait_dead(server_pid, child_pid)


def test_server_death_mid_run_fails_the_rest_with_the_reason_and_keeps_a_partial_run(tmp_path):
    """The stub crashes after ~1.5 s of a 4 s load: what was done is kept, the rest is failed and marked."""
    server = stub_server(
        token_delay_s=0.01, extra_args=["--fail-after-s", "1.5"], log_path=tmp_path / "s.log"
    )
    requests = [Request(8, 10, 0.1 * i) for i in range(40)]
    with ServerGroup([server]) as started:
        run = replay_servers(started, requests, idle_s=0, warmup_requests=0, timeout_s=5.0)
    assert run.partial and run.exit_reason is not None and "exited with code 3" in run.exit_reason
    assert len(run.records) == 40  # nothing dropped
    ok = [r for r in run.records if r.success]
    unsent = [r for r in run.records if r.failure == "server-exit"]
    assert 5 <= len(ok) < 40 and len(unsent) >= 10
    assert all("exited with code 3" in (r.error or "") for r in run.records if not r.success)
    assert any("PARTIAL RUN" in n for n in run.notes)


def test_vllm_command_line_and_config_dir():
    arch = load_architecture("tiny")
    server = vllm_server(arch, VllmServerConfig("eager", max_num_seqs=32), check_installed=False)
    spec = server._build(43210)
    argv = list(spec.argv)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    model_dir = Path(argv[argv.index("--model") + 1])
    assert json.loads((model_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value("--load-format") == "dummy" and value("--max-num-seqs") == "32"
    assert value("--host") == "127.0.0.1" and value("--port") == "43210"
    assert "--skip-tokenizer-init" in argv and "--enforce-eager" in argv
    assert spec.health_path == "/health" and server.server_kind == "vllm"
    assert server.token_id_range[1] <= arch.vocab_size  # prompts stay inside the tiny vocabulary
    graphs = vllm_command(model_dir, 1, VllmServerConfig("cudagraphs"), 4096)
    assert "--enforce-eager" not in graphs
    # prefix caching off: a replay's prompts repeat by request index across runs on one server
    assert "--no-enable-prefix-caching" in argv and "--no-enable-prefix-caching" in graphs
    assert "--max-num-batched-tokens" not in graphs  # vLLM's own default unless asked
    chunked = vllm_command(model_dir, 1, VllmServerConfig(max_num_batched_tokens=16384), 4096)
    assert chunked[chunked.index("--max-num-batched-tokens") + 1] == "16384"
    with pytest.raises(ConfigError, match="max_num_batched_tokens must be ≥ 1, got 0"):
        VllmServerConfig(max_num_batched_tokens=0)


def test_launch_rejects_bad_input_before_starting_anything():
    with pytest.raises(ConfigError, match="unknown server"):
        launch_servers("sglang", "tiny")
    with pytest.raises(ConfigError, match="replicas"):
        launch_servers("transformers", "tiny", replicas=0)
    with pytest.raises(ConfigError, match="device"):
        launch_servers("transformers", "tiny", device="tpu")
    with pytest.raises(ConfigError, match="mode"):
        VllmServerConfig("turbo")
    if __import__("importlib").util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match="vLLM installed"):
            launch_servers("vllm", "tiny")
