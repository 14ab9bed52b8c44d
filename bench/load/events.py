"""What Locust counts of a run: real requests only. Its header (RPS, failures), Requests table, charts and
`locust_stats.csv` get one `chat` or `stream` row per traffic class, a failure being a request that failed (error,
timeout, invalid tool call). What the bench judges of those requests and of the NPCs' ticks (TTFT, ITL, SLO,
deadlines, decisions) is kept apart, in bench/load/figures.py: counted as requests, those once made three NPCs
sending 2.2 requests/s read as 9.9 RPS with 31 % failures and none failed.
"""

from __future__ import annotations

from locust import events

from bench.load.figures import FAILED_OUTCOMES
from bench.records import RequestRecord


class RequestFailed(Exception):
    """Shown in Locust's failure table by outcome: error, timeout, tool_invalid."""


def fire_request(record: RequestRecord) -> None:
    """Count a request in Locust's stats, in the process that sent it (Locust relays a worker's to its master)."""
    failed = record.outcome in FAILED_OUTCOMES
    streamed = record.ttft_s is not None or record.outcome == "interrupted"
    events.request.fire(request_type="stream" if streamed else "chat", name=record.cls, response_time=record.e2e_s * 1000,
                        response_length=record.output_tokens, context={},
                        exception=RequestFailed(f"{record.outcome}: {record.error}") if failed else None)
