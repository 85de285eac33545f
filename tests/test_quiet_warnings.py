"""Commands print no third-party noise: no amdsmi warning on `env`/`replay`, no runpy warning from the
stub server run as a module (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from llm_energy.serving import StubServer
from llm_energy.serving.servers.stub import stub_server


def _clean_env() -> dict[str, str]:
    """This environment without the amdsmi stub an earlier test may have put on PYTHONPATH."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and "noamdsmi" not in p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}


def _llm_energy(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "llm_energy", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=_clean_env())


def test_env_and_replay_print_no_amdsmi_warning():
    """On a machine without ROCm, Zeus used to log 'Failed to import amdsmi' on every GPU lookup."""
    env = _llm_energy("env", "--json")
    assert env.returncode == 0, env.stderr
    assert json.loads(env.stdout)["gpu_count"] >= 0
    assert "amdsmi" not in env.stderr.lower() and "warning" not in env.stderr.lower()
    with StubServer() as stub:
        replay = _llm_energy("replay", "--url", stub.url, "--num-requests", "3", "--idle-s", "0", "--json")
    assert replay.returncode == 0, replay.stderr
    assert "amdsmi" not in replay.stderr.lower()


def test_the_stub_server_module_runs_without_a_runpy_warning(tmp_path):
    """`python -m llm_energy.serving.stub` is not imported by its package before it runs as __main__."""
    strict = [sys.executable, "-W", "error::RuntimeWarning", "-m", "llm_energy.serving.stub", "--help"]
    done = subprocess.run(strict, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    server = stub_server(log_path=tmp_path / "stub.log")
    with server:
        pass
    assert "RuntimeWarning" not in (tmp_path / "stub.log").read_text()


SHIELD_TWICE = """\
import json, os, sys
from llm_energy.compat import hide_broken_amdsmi, shield_broken_amdsmi
broken = hide_broken_amdsmi()
first, second = shield_broken_amdsmi(), shield_broken_amdsmi()
print(json.dumps([broken, first == second, os.environ.get("PYTHONPATH", "").count("noamdsmi")]))
"""


def test_shielding_amdsmi_twice_gives_the_same_environment():
    """Idempotent: a second call (another executor or engine in the same process) adds nothing."""
    done = subprocess.run(
        [sys.executable, "-c", SHIELD_TWICE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=_clean_env(),
    )
    broken, same, stubs = json.loads(done.stdout)
    assert same
    assert stubs == (1 if broken else 0)
