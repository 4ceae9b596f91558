"""`meterhouse serve` as a real process on 127.0.0.1, for tests that call it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(args: list[str], env: dict[str, str] | None = None,
                   timeout: float = 60) -> Iterator[httpx.Client]:
    """Start `meterhouse serve ARGS --port N`, wait until it answers, stop it afterwards."""
    port = free_port()
    # Only `args` and `env` configure the server: MH_* variables this test process inherited
    # or picked up (run_dbt exports MH_SCHEMA and friends for dbt) must not leak into it.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MH_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "serve", *args, "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env={**inherited, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"meterhouse serve exited: {process.stdout.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("meterhouse serve did not start in time")
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
