"""A results folder is readable at every moment: while running, after a crash, and once complete."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from bench.records import Manifest, RequestRecord
from bench.rundir import RunDir, machine_info, new_run_id, read_manifest, read_requests, utc_now


def manifest(run_id: str = "r1") -> Manifest:
    return Manifest(run_id=run_id, status="running", started_at=utc_now(), mix={"mix": {"name": "npc-cpu"}},
                    stack={"profile": "cpu"}, endpoints={"proxy": "http://127.0.0.1:4000/v1"},
                    versions={"locust": "2.47.0"}, git={"commit": "abc", "dirty": False}, machine=machine_info())


def record(i: int) -> RequestRecord:
    return RequestRecord(cls="ambient", kind="ambient", group="light", npc_id=f"npc-{i}", t_start=float(i),
                         e2e_s=0.5, max_tokens=8, output_tokens=8, outcome="ok")


def test_run_folder_is_readable_while_running_and_after_close(tmp_path) -> None:
    run = RunDir(tmp_path / "r1", manifest())
    assert read_manifest(tmp_path / "r1").status == "running"
    run.add(record(1))
    run.add(record(2))
    assert len(read_requests(tmp_path / "r1")) == 2  # flushed as it goes
    run.close("complete", {"all": {"requests": 2}})
    done = read_manifest(tmp_path / "r1")
    assert done.status == "complete" and done.ended_at and done.summary["all"]["requests"] == 2
    assert done.files["requests"] == "requests.jsonl"


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path) -> None:
    run = RunDir(tmp_path / "r2", manifest("r2"))
    run.add(record(1))
    with open(tmp_path / "r2" / "requests.jsonl", "a") as f:
        f.write('{"cls": "ambient", "kind": "amb')  # the process died mid-write
    df = read_requests(tmp_path / "r2")
    assert list(df.npc_id) == ["npc-1"]
    assert read_manifest(tmp_path / "r2").status == "running"  # never closed: not complete


def test_manifest_describes_the_machine(tmp_path) -> None:
    RunDir(tmp_path / "r3", manifest("r3"))
    data = json.loads((tmp_path / "r3" / "manifest.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["memory_gib"] > 0
    assert data["git"]["commit"] == "abc"


def test_run_ids_sort_by_time() -> None:
    earlier = new_run_id("npc-cpu", datetime(2026, 11, 22, 3, 0, 0, tzinfo=timezone.utc))
    later = new_run_id("npc-cpu", datetime(2026, 11, 22, 3, 0, 1, tzinfo=timezone.utc))
    assert earlier == "20261122-030000-npc-cpu" and earlier < later
