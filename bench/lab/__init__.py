"""Experiments on the stack: what the proxy costs, the bench against vLLM's own, the simulator's
calibration, sweeps of serve settings and load, and the scale-out plan from the harness's ceilings."""
