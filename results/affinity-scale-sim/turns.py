"""In a run's requests.jsonl (every request that reached a worker): per group, how many NPCs two workers served;
and for each NPC's turn after its first in a group, did it move worker, how long had the NPC been silent in that
group, and how many other pins (distinct group and NPC) were used in between? The analysis is
bench/report/pages/session_affinity.py's, which docs/studies/session-affinity.md is generated from.

    PYTHONPATH=. python results/affinity-scale-sim/turns.py results/sweep-gpu-sim-routing-scale/s1-l1-sim/requests.jsonl ...
"""

import sys

import pandas as pd

from bench.report.pages.session_affinity import npcs_split, turns

for path in sys.argv[1:]:
    requests = pd.read_json(path, lines=True)
    split = {group: f"{n} of {total}" for group, (n, total) in npcs_split(requests).items()}
    print(f"{path}: NPCs served by more than one worker: {split}")
    found = turns(requests)
    print(f"{path}: {len(found)} later turns, {int(found.moved.sum())} moved worker")
    print(found.groupby("moved")[["other_pins", "silent_s"]].describe().round(1).T.to_string())
    for low, high in [(0, 150), (150, 190), (190, 200), (200, 250), (250, 10_000)]:
        band = found[(found.other_pins >= low) & (found.other_pins < high)]
        print(f"  {low}-{high} other pins between the turns: {len(band)} turns, {int(band.moved.sum())} moved")
    print()
