"""A real OpenAI-compatible server for tests: llama.cpp (llama-cpp-python's server) serving the SmolLM2 GGUF on CPU."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sampler.engines.smollm2 import smollm2_gguf_path

STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LlamaServer:
    base_url: str
    """e.g. http://127.0.0.1:PORT/v1"""
    log: Path
    """The server's stdout and stderr, access lines included."""

    def completions_served(self) -> int:
        """How many chat completions this server answered (its access log's lines for them)."""
        return sum("POST /v1/chat/completions" in line for line in self.log.read_text(errors="replace").splitlines())


@contextmanager
def llama_server(log_dir: Path, alias: str = "smollm2") -> Iterator[LlamaServer]:
    """Start a server on a free port, wait until it answers, stop it on exit; fail the test if it cannot start."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is in requirements-dev.txt")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path())]
    command += ["--model_alias", alias, "--chat_format", "chatml", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", "2048"]
    log = log_dir / f"{alias}.log"
    # The server logs a lot: to a file, so a full pipe never stalls it.
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(f"llama.cpp server did not come up in {STARTUP_SECONDS} s")
        yield LlamaServer(base_url, log)
    finally:
        server.terminate()
        server.wait(timeout=30)
