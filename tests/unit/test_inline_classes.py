"""A mix file can define its own NPC classes, so a studio describes its traffic without editing bench/classes.toml."""

from __future__ import annotations

import pytest

from bench.fit import check_fits
from bench.spec import MixError, load_classes, load_mix
from serve import load_profile

STUDIO_MIX = """
description = "A studio's own guards and merchants, with the shipped ambient class beside them"
scale = "cpu"
weights = { guard = 2, merchant = 1, ambient = 1 }
shape = { kind = "poisson", rate_rps = 1.0, duration_s = 10, users = 4 }

[classes.guard]
kind = "ambient"
group = "light"
stream = false
shared_prefix_share = 0.5
prompt_tokens = { mean = 150, sd = 10, min = 100, max = 200 }
output_tokens = { mean = 8 }
slo = { e2e_max_s = 1.5 }

[classes.merchant]
kind = "dialogue"
group = "heavy"
stream = true
prompt_tokens = { mean = 300 }
output_tokens = { mean = 40 }
slo = { ttft_max_s = 1.0 }
"""


def write(tmp_path, text: str):
    path = tmp_path / "studio.toml"
    path.write_text(text)
    return path


def test_a_mix_with_its_own_classes_resolves_beside_the_shipped_ones(tmp_path) -> None:
    mix = load_mix(str(write(tmp_path, STUDIO_MIX)))
    assert set(mix.classes) == {"guard", "merchant", "ambient"}
    assert mix.classes["guard"].name == "guard" and mix.classes["guard"].slo.e2e_max_s == 1.5
    assert mix.classes["merchant"].stream and mix.classes["merchant"].group == "heavy"
    assert mix.classes["ambient"] == load_classes("cpu")["ambient"]
    check_fits(mix, load_profile("cpu"))


def test_a_class_of_the_mix_replaces_the_shipped_class_of_that_name(tmp_path) -> None:
    text = STUDIO_MIX.replace("[classes.guard]", "[classes.ambient]").replace("guard = 2, ", "")
    mix = load_mix(str(write(tmp_path, text)))
    assert mix.classes["ambient"].prompt_tokens.mean == 150


def test_a_bad_field_of_an_inline_class_is_named_with_its_file(tmp_path) -> None:
    path = write(tmp_path, STUDIO_MIX.replace("prompt_tokens = { mean = 300 }", "prompt_tokens = { mean = -3 }"))
    with pytest.raises(MixError) as error:
        load_mix(str(path))
    assert str(path) in str(error.value)
    assert "classes.merchant.prompt_tokens.mean" in str(error.value)


def test_an_inline_class_of_an_unknown_kind_says_which_kinds_exist(tmp_path) -> None:
    with pytest.raises(MixError, match="unknown kind 'gossip'"):
        load_mix(str(write(tmp_path, STUDIO_MIX.replace('kind = "dialogue"', 'kind = "gossip"'))))


def test_a_weight_on_a_class_nobody_defines_lists_the_known_ones(tmp_path) -> None:
    with pytest.raises(MixError, match="unknown classes thief; known: .*guard"):
        load_mix(str(write(tmp_path, STUDIO_MIX.replace("ambient = 1 }", "thief = 1 }"))))


def test_an_inline_class_that_does_not_fit_says_where_to_shorten_it(tmp_path) -> None:
    path = write(tmp_path, STUDIO_MIX.replace("prompt_tokens = { mean = 300 }", "prompt_tokens = { mean = 9000 }"))
    with pytest.raises(MixError, match=r"\[classes.merchant\] of mix studio"):
        check_fits(load_mix(str(path)), load_profile("cpu"))
