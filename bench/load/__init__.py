"""Load generation: what the Locust entry point (bench/locustfile.py) wires together, one job a module.

- `events`: what Locust counts: real requests only, in its own stats.
- `figures`: the NPC figures (TTFT, ITL, SLO, deadlines, tick decisions), a table apart from the requests.
- `child`: Locust as a child process of `bench run`/`bench ui`: stop signals passed on, its stop bounded.
"""
