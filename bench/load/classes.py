"""Which traffic class each request of a run is: the mix's weights, spread evenly over time."""

from __future__ import annotations

from bench.spec import ResolvedMix, TrafficClass


class ClassPicker:
    """Smooth weighted round-robin over the mix's weights: every class gets its share, and each shows up once in
    every cycle of the schedule (a random draw can starve a rare class in a short run)."""

    def __init__(self, mix: ResolvedMix) -> None:
        self.classes = mix.classes
        self.weights = {name: mix.mix.weights[name] for name in mix.classes}
        self.weight_sum = sum(self.weights.values())
        self.credit = dict.fromkeys(self.weights, 0.0)

    def next(self) -> TrafficClass:
        for name, weight in self.weights.items():
            self.credit[name] += weight
        name = max(self.credit, key=self.credit.__getitem__)
        self.credit[name] -= self.weight_sum
        return self.classes[name]
