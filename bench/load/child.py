"""Locust as a child process of `bench run` and `bench ui`: started in a session of its own, told to stop by
SIGINT (Ctrl-C, or SIGTERM here: passed on as SIGINT), and stopped within a bound whatever state the stack is in.

Locust's SIGINT handling stops the load, lets requests in flight end (its `--stop-timeout`, `stop_timeout_s`), writes
what was measured, and exits. Two things could keep it from exiting, and did, for minutes:
- SIGINT inherited as ignored. A shell starts a background job (`bench ui &`) with SIGINT ignored; the child inherits
  that, Python then installs no KeyboardInterrupt handler, and every SIGINT is lost. This process puts a handler in
  place while Locust runs, so Locust starts with SIGINT at its default.
- anything else that holds its teardown up. After `stop_budget_s` (the stop timeout, and time to write the run's
  folder) from the first stop signal, Locust's whole session is killed and the user is told so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

RESULTS_WRITE_S = 30  # after the stop timeout: the last scrapes (each up to 5 s a target), summary and reports
POLL_S = 0.2


def stop_timeout_s(request_timeout_s: float) -> int:
    """Locust's --stop-timeout: a request in flight at the end may run to its own timeout and still be recorded."""
    return int(request_timeout_s) + 10


def stop_budget_s(request_timeout_s: float) -> float:
    """From the stop signal to a Locust that is gone, on its own or killed."""
    return stop_timeout_s(request_timeout_s) + RESULTS_WRITE_S


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_until_done(command: list[str], budget_s: float) -> int:
    """Run Locust in its own session and wait for it. Ctrl-C here is passed on once, so it stops the load, writes
    what was measured and marks the run interrupted (a second SIGINT could cut that short). SIGTERM (a service
    manager, `kill`) is passed on as SIGINT too: Locust's own SIGTERM handler shuts down twice, once in the
    handler and once when its runner ends, and exits before the run's folder is written. Either way Locust is
    not left running without us: if it has not exited `budget_s` after the first of those signals, its session is
    killed."""
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # so the child's SIGINT is not ignored
    process = subprocess.Popen(command, start_new_session=True)
    stop_asked_at: float | None = None

    def stop(how: str) -> None:
        nonlocal stop_asked_at
        if stop_asked_at is not None:
            say("still writing the results; wait a moment")
            return
        say(f"\n{how}: stopping the load and writing what was measured ...")
        process.send_signal(signal.SIGINT)
        stop_asked_at = time.monotonic()

    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: stop("terminated"))
    try:
        while True:
            try:
                return process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                if stop_asked_at is not None and time.monotonic() - stop_asked_at > budget_s:
                    return kill(process, budget_s)
            except KeyboardInterrupt:
                stop("interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def kill(process: subprocess.Popen, budget_s: float) -> int:
    """Locust's whole session (with `--processes`, its worker processes too)."""
    say(f"Locust (pid {process.pid}) did not exit within {budget_s:g} s of being asked to stop; killed it and its "
        "processes. The run's folder may say `running`: what was measured until then is in its requests.jsonl")
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    return 1
