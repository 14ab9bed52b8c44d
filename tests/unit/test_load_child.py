"""Locust as a child process (bench/load/child.py): a stop signal reaches it even when this process was started with
SIGINT ignored, as a shell starts a background job; and a child that still does not exit is killed after the
budget, and the user is told. Checked with a stand-in child (a Python sleeping), through a real SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

GUARD_S = 60  # only against a hang: each case ends long before


def runner(child_code: str, budget_s: float) -> subprocess.Popen:
    """`run_until_done` on a child running `child_code`, in a process started with SIGINT ignored (`cmd &`)."""
    script = textwrap.dedent(f"""
        import sys
        from bench.load.child import run_until_done
        sys.exit(run_until_done([sys.executable, "-c", {child_code!r}], budget_s={budget_s}))
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def stop(process: subprocess.Popen) -> tuple[int, str, int]:
    """SIGTERM once the child says it is ready; (exit code, output, the child's pid)."""
    assert process.stdout is not None
    child_pid = int(process.stdout.readline().split()[-1])
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        for pid in (child_pid, process.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        pytest.fail("run_until_done did not return after SIGTERM")
    return process.returncode, output, child_pid


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_child_of_a_process_started_with_sigint_ignored_still_stops_on_the_sigint_passed_on() -> None:
    child = "import os, time; print('ready', os.getpid(), flush=True); time.sleep(600)"
    code, output, child_pid = stop(runner(child, budget_s=GUARD_S * 2))
    assert "terminated: stopping the load" in output and "did not exit" not in output  # it stopped by itself
    assert "KeyboardInterrupt" in output and code != 0 and gone(child_pid)


def test_a_child_that_does_not_exit_within_the_budget_is_killed_and_the_user_told() -> None:
    child = ("import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
             "print('ready', os.getpid(), flush=True); time.sleep(600)")
    code, output, child_pid = stop(runner(child, budget_s=1))
    assert "did not exit within 1 s of being asked to stop; killed it" in output
    assert code == 1 and gone(child_pid)
