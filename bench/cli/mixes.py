"""`python -m bench mixes`: the shipped mixes, each with its scale, shape and classes."""

from __future__ import annotations

import argparse

from bench.spec import load_mix, mix_names

HELP = "list the mixes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name in mix_names():
        mix = load_mix(name)
        print(f"{name:14} {mix.mix.scale}  {mix.mix.shape.kind:7} {', '.join(mix.classes)}  -- {mix.mix.description}")
    return 0
