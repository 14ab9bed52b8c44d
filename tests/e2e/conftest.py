"""The real CPU stack, started once per session the way a user starts it, shared by every end-to-end test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from openai import OpenAI

SERVE = [sys.executable, "-m", "serve"]


def serve(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, check=check)


def stack_status() -> dict:
    return json.loads(serve("status", "--json", check=False).stdout)


@pytest.fixture(scope="session")
def stack() -> dict:
    """`python -m serve provision` then `up --detach --profile cpu` (with vLLM's development routes, for the
    cache-reset tests); yields `status --json`; `down` at the end.

    With NPCBENCH_TEST_REUSE_STACK=1, a running cpu stack is used as it is and left running (for working on
    the tests; the tests that stop the stack or count restarts expect a fresh one)."""
    if serve("status", "--json", check=False).returncode == 0:
        if os.environ.get("NPCBENCH_TEST_REUSE_STACK") == "1":
            status = stack_status()
            if status["phase"] != "ready":
                pytest.fail(f"the running stack is {status['phase']}, not ready (`python -m serve status`)")
            yield status
            return
        pytest.fail("a stack is already running on this machine: stop it with `python -m serve down` before the tests "
                    "(or set NPCBENCH_TEST_REUSE_STACK=1 to test against it)")
    subprocess.run([*SERVE, "provision", "--profile", "cpu"], check=True)
    # worker_dev_endpoints: so the cache-reset tests can empty prefix caches (vLLM's /reset_prefix_cache); every
    # other setting is the cpu profile's, and the workers still listen on 127.0.0.1 only.
    up = subprocess.run([*SERVE, "up", "--detach", "--profile", "cpu", "--set", "worker_dev_endpoints=true"], text=True,
                        capture_output=True)
    print(up.stdout, up.stderr)
    if up.returncode != 0:
        pytest.fail(f"`python -m serve up --detach` failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
    try:
        yield stack_status()
    finally:
        serve("down", check=False)


@pytest.fixture(scope="session")
def client(stack: dict) -> OpenAI:
    return OpenAI(base_url=stack["base_url"], api_key=stack["key"], max_retries=0, timeout=120)


def pytest_configure(config):
    config.addinivalue_line("markers", "last(n=1): run after all other tests of the session, in order of n")
