"""vLLM's usage statistics stay off unless asked for: in the launched server's environment and in
this process before the offline engine imports vLLM.

vLLM itself is replaced by a stand-in package on PYTHONPATH (a third-party program, not our code):
its API server records the environment it was started with and answers /health; its `LLM` records
the environment at import time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.serving.servers.vllm import VllmServerConfig, vllm_server

KEYS = ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK")

API_SERVER = """\
import argparse, json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()
with open(os.environ["FAKE_VLLM_ENV_OUT"], "w") as fh:
    json.dump({k: os.environ.get(k) for k in ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK")}, fh)

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", args.port), Health).serve_forever()
"""

VLLM_INIT = """\
import os
SEEN = {k: os.environ.get(k) for k in ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK")}

class LLM:
    def __init__(self, **kwargs):
        raise RuntimeError("stand-in vLLM: " + repr(SEEN))
"""


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    root = tmp_path / "fake-vllm"
    api = root / "vllm" / "entrypoints" / "openai"
    api.mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text(VLLM_INIT)
    (root / "vllm" / "entrypoints" / "__init__.py").write_text("")
    (api / "__init__.py").write_text("")
    (api / "api_server.py").write_text(API_SERVER)
    return root


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in KEYS}


@pytest.mark.parametrize(("usage_stats", "expected"), [(False, "1"), (True, None)])
def test_the_launched_vllm_server_runs_without_usage_stats_unless_allowed(
    tmp_path, fake_vllm, monkeypatch, usage_stats, expected
):
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    out = tmp_path / "env.json"
    config = VllmServerConfig("eager", usage_stats=usage_stats)
    env = {"PYTHONPATH": str(fake_vllm), "FAKE_VLLM_ENV_OUT": str(out)}
    server = vllm_server(
        load_architecture("tiny"), config, env=env, check_installed=False, startup_timeout_s=30
    )
    with server:
        seen = json.loads(out.read_text())
    assert seen == dict.fromkeys(KEYS, expected)


ENGINE_SCRIPT = """\
import sys
from llm_energy.architectures import load_architecture
from llm_energy.engines.vllm import VllmEngine, VllmEngineConfig
from llm_energy.errors import EngineError

config = VllmEngineConfig(mode="eager", device="cpu", usage_stats=sys.argv[1] == "on")
engine = VllmEngine(config, load_architecture("tiny"))
try:
    engine.load()
except EngineError as exc:
    print(exc)
"""


@pytest.mark.parametrize(("usage_stats", "expected"), [("off", "'1'"), ("on", "None")])
def test_the_offline_engine_sets_the_opt_out_before_importing_vllm(fake_vllm, usage_stats, expected):
    env = {**_clean_env(), "PYTHONPATH": os.pathsep.join([str(fake_vllm), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT, usage_stats],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "stand-in vLLM" in done.stdout
    assert f"'VLLM_NO_USAGE_STATS': {expected}, 'DO_NOT_TRACK': {expected}" in done.stdout
