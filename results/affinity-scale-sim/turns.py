"""In a run's requests.jsonl (every request that reached a worker): per group, how many NPCs two workers
served; and for each NPC's turn after its first in a group, did it move worker, how long had the NPC been
silent in that group, and how many other pins (distinct group and NPC) were used in between?

    python results/affinity-scale-sim/turns.py results/sweep-gpu-sim-routing-scale/s1-l1-sim/requests.jsonl ...
"""

import sys

import pandas as pd


def turns(path: str) -> pd.DataFrame:
    requests = pd.read_json(path, lines=True)
    requests = requests[requests.worker.notna()].sort_values("t_start").reset_index(drop=True)
    pins = list(zip(requests.group, requests.npc_id, strict=True))
    last: dict[tuple[str, str], int] = {}
    rows = []
    for i, pin in enumerate(pins):
        if pin in last:
            j = last[pin]
            rows.append({"moved": requests.worker[i] != requests.worker[j], "other_pins": len(set(pins[j + 1:i]) - {pin}),
                         "silent_s": requests.t_start[i] - requests.t_start[j]})
        last[pin] = i
    return pd.DataFrame(rows)


def npcs_split(path: str) -> dict[str, str]:
    requests = pd.read_json(path, lines=True)
    workers = requests[requests.worker.notna()].groupby(["group", "npc_id"]).worker.nunique()
    return {group: f"{int((counts > 1).sum())} of {len(counts)}" for group, counts in workers.groupby(level=0)}


for path in sys.argv[1:]:
    print(f"{path}: NPCs served by more than one worker: {npcs_split(path)}")
    found = turns(path)
    print(f"{path}: {len(found)} later turns, {int(found.moved.sum())} moved worker")
    print(found.groupby("moved")[["other_pins", "silent_s"]].describe().round(1).T.to_string())
    for low, high in [(0, 150), (150, 190), (190, 200), (200, 250), (250, 10_000)]:
        band = found[(found.other_pins >= low) & (found.other_pins < high)]
        print(f"  {low}-{high} other pins between the turns: {len(band)} turns, {int(band.moved.sum())} moved")
    print()
