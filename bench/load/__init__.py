"""Load generation: the parts bench/locustfile.py (Locust's entry point, where `LocustRun` wires them) is made of.

- `events`: what Locust counts: real requests only, in its own stats.
- `figures`: the NPC figures (TTFT, ITL, SLO, deadlines, tick decisions), a table apart from the requests.
- `classes`: which traffic class each request is, by the mix's weights.
- `folder`: a run's manifest as it opens.
- `loops`: its background loops: the stack's /metrics scraped (and the stack watched), the generator's own cost.
- `relay`: request records between Locust processes (`--processes N`): workers send, the master keeps the run.
- `reports`: what a run writes at its end: the servers' counts beside the client's, Locust's reports.
- `child`: Locust as a child process of `bench run`/`bench ui`: stop signals passed on, its stop bounded.
"""
