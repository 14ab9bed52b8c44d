"""What the harness itself spent: each stack process's CPU (the proxy among them) and memory, and the load
generator's CPU and timer lag (summary.server, summary.client)."""

from __future__ import annotations

import pandas as pd

from bench.report.analysis import Run
from bench.report.panels import panel, paragraph, section, table


def process_table(run: Run) -> pd.DataFrame | None:
    """Per stack process: CPU seconds over the run, CPU ms a request, and its memory trend (MiB)."""
    summary = run.manifest.summary
    if summary is None or summary.server is None or not (summary.server.cpu_s or summary.server.memory):
        return None
    server, requests = summary.server, max(summary.all.requests, 1)
    names = list(dict.fromkeys([*server.cpu_s, *server.memory]))
    rows = []
    for name in names:
        cpu_s = server.cpu_s.get(name)
        memory = server.memory[name].model_dump() if name in server.memory else {}
        rows.append({"cpu_s": cpu_s, "cpu_ms_per_request": None if cpu_s is None else round(cpu_s * 1000 / requests, 1),
                     **memory})
    return pd.DataFrame(rows, index=pd.Index(names, name="process"))


@panel("cost", order=60)
def cost(run: Run) -> str | None:
    summary = run.manifest.summary
    processes = process_table(run)
    client = summary.client if summary else None
    if processes is None and client is None:
        return None
    body = []
    if processes is not None:
        body += [paragraph("Each stack process with its children (the proxy, the workers): CPU over the run and "
                           "resident memory, with the slope over the run's second half."),
                 table(processes, "processes")]
    if client is not None:
        body += [paragraph("The load generator (Locust): its CPU, and how late its 100 ms timers fired. A starved "
                           "load generator measures every latency late by as much."),
                 table(pd.DataFrame([client.model_dump()], index=pd.Index(["load generator"])), "client")]
    if (lateness := run.manifest.lateness()) is not None:
        body.append(paragraph(("Warning: " if lateness.exceeded else "") + lateness.describe() + "."))
    return section("The harness's own cost", *body)
