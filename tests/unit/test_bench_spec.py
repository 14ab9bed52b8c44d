"""Traffic classes, mixes and their validation."""

from __future__ import annotations

import random

import pytest

from bench.fit import check_fits
from bench.kinds import KINDS
from bench.spec import LengthDist, MixError, TrafficClass, load_classes, load_mix, mix_names
from serve.spec import load_profile


@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_every_class_is_defined_at_both_scales(scale: str) -> None:
    classes = load_classes(scale)
    assert set(classes) == {"ambient", "tool_call", "dialogue", "interrupted", "multi_turn", "planning", "fixed"}
    assert classes["planning"].priority > classes["ambient"].priority  # background goes last
    assert classes["tool_call"].tools and classes["dialogue"].stream


def test_gpu_scale_is_prefill_heavy() -> None:
    ambient = load_classes("gpu")["ambient"]
    assert ambient.prompt_tokens.mean / ambient.output_tokens.mean > 100


def test_length_samples_stay_in_bounds() -> None:
    dist = LengthDist(mean=100, sd=50, min=60, max=130)
    rng = random.Random(1)
    samples = [dist.sample(rng) for _ in range(2000)]
    assert min(samples) == 60 and max(samples) == 130
    assert LengthDist(mean=7).sample(rng) == 7


@pytest.mark.parametrize("name", mix_names())
def test_every_shipped_mix_loads(name: str) -> None:
    mix = load_mix(name)
    assert mix.classes and set(mix.classes) <= set(mix.mix.weights)


def test_cpu_mixes_fit_the_cpu_profile_and_gpu_mix_the_gpu_profile() -> None:
    for name in mix_names():
        mix = load_mix(name)
        check_fits(mix, load_profile("cpu" if mix.mix.scale == "cpu" else "gpu"))


def test_mix_that_does_not_fit_is_refused_before_running() -> None:
    with pytest.raises(MixError, match=r"class planning: up to \d+ tokens but group heavy has max_model_len 1024"):
        check_fits(load_mix("npc-cpu"), load_profile("cpu", ["groups.heavy.max_model_len=1024"]))


def test_unknown_mix_names_the_choices() -> None:
    with pytest.raises(MixError, match="unknown mix 'npc-cpuu': choose one of .*npc-cpu"):
        load_mix("npc-cpuu")


def test_mix_with_unknown_class(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('scale = "cpu"\nweights = { ambient = 1, gossip = 2 }\nshape = { kind = "closed", users = 2 }\n')
    with pytest.raises(MixError, match="unknown classes gossip"):
        load_mix(str(path))


def test_mix_with_bad_shape(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('scale = "cpu"\nweights = { ambient = 1 }\nshape = { kind = "tick", npcs = 0, tick_hz = 1 }\n')
    with pytest.raises(MixError, match=r"shape.tick.npcs: Input should be greater than 0"):
        load_mix(str(path))


def test_shape_overrides_map_to_the_shape_kind() -> None:
    assert load_mix("ambient", npcs=3).mix.shape.npcs == 3
    closed = load_mix("npc-cpu").mix.shape
    assert closed.overrides(npcs=5, duration_s=9) == {"users": 5, "duration_s": 9}
    with pytest.raises(MixError, match="--rate-rps applies to a poisson shape"):
        closed.overrides(rate_rps=3)


def test_a_mix_sets_its_own_lengths_for_a_class(tmp_path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('scale = "cpu"\nweights = { fixed = 1 }\nshape = { kind = "closed", users = 2, think_time_s = 0 }\n'
                    '[lengths.fixed]\nprompt_tokens = { mean = 100 }\n')
    fixed = load_mix(str(path)).classes["fixed"]
    assert fixed.prompt_tokens.mean == 100 and fixed.output_tokens == load_classes("cpu")["fixed"].output_tokens
    path.write_text(path.read_text().replace("[lengths.fixed]", "[lengths.ambient]"))
    with pytest.raises(MixError, match="names ambient, which the mix does not weigh"):
        load_mix(str(path))


def test_a_direct_run_needs_a_worker_of_every_class_group() -> None:
    from types import SimpleNamespace

    from bench.spec import direct_worker
    workers = [SimpleNamespace(name="heavy-0", group="heavy"), SimpleNamespace(name="light-0", group="light")]
    assert direct_worker(load_mix("dialogue"), workers, "light-0").name == "light-0"
    with pytest.raises(MixError, match="serves the light group, but mix npc-cpu has heavy classes too"):
        direct_worker(load_mix("npc-cpu"), workers, "light-0")
    with pytest.raises(MixError, match="the stack's workers are heavy-0, light-0"):
        direct_worker(load_mix("dialogue"), workers, "light-9")


def test_a_class_of_a_kind_sets_what_its_kind_needs(tmp_path) -> None:
    base = {"name": "x", "group": "light", "prompt_tokens": {"mean": 10}, "output_tokens": {"mean": 4}, "slo": {}}
    with pytest.raises(ValueError, match="a class of kind interrupted sets stream and interrupt_after_tokens"):
        TrafficClass.model_validate({**base, "kind": "interrupted", "stream": False})
    with pytest.raises(ValueError, match="unknown kind 'gossip'; kinds: ambient, tool_call"):
        TrafficClass.model_validate({**base, "kind": "gossip", "stream": False})
    assert TrafficClass.model_validate({**base, "kind": "multi_turn", "stream": False, "turns": 3}).turns == 3


def test_every_shipped_class_is_of_a_known_kind() -> None:
    for scale in ("cpu", "gpu"):
        assert {cls.kind for cls in load_classes(scale).values()} <= set(KINDS)


def test_a_mix_path_that_does_not_exist_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(MixError, match=r"mix file .*nowhere.toml does not exist"):
        load_mix(str(tmp_path / "nowhere.toml"))
