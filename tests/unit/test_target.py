"""`--target URL`: the flags of an outside endpoint parsed and checked, its key from the environment, what its
/v1/models says, and clear errors before anything starts. The target is an httpx MockTransport (pure logic)."""

from __future__ import annotations

import httpx
import pytest

from bench.fit import check_fits_target
from bench.spec import MixError, load_mix
from bench.target import (
    TargetError,
    api_key,
    base_url,
    describe,
    parse_metrics,
    parse_model_map,
    strip_credentials,
)

GROUPS = ["heavy", "light"]
KEY = "sk-target-0123456789abcdef"


def models_endpoint(models: list[dict], key: str | None = KEY) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models"
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return httpx.Response(401, json={"error": "invalid key"})
        return httpx.Response(200, json={"object": "list", "data": models})

    return httpx.MockTransport(answer)


def test_the_base_url_ends_in_v1_and_keeps_no_credentials() -> None:
    assert base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert strip_credentials("https://user:secret@host.example:8443/v1?api_key=x") == "https://host.example:8443/v1"
    with pytest.raises(TargetError, match="--api-key-env") as caught:
        base_url("http://user:secret@127.0.0.1:8000/v1")
    assert "secret" not in str(caught.value)
    with pytest.raises(TargetError, match="http"):
        base_url("127.0.0.1:8000")


def test_a_model_map_names_each_group_or_one_model_for_all() -> None:
    assert parse_model_map("heavy=Qwen/Qwen2.5-14B-Instruct-AWQ, light=small", GROUPS) == {
        "heavy": "Qwen/Qwen2.5-14B-Instruct-AWQ", "light": "small"}
    assert parse_model_map("one-model", GROUPS) == {"heavy": "one-model", "light": "one-model"}
    with pytest.raises(TargetError, match="no served model for group.*light"):
        parse_model_map("heavy=a", GROUPS)
    assert parse_model_map("heavy=a,light=b,medium=c", GROUPS) == {"heavy": "a", "light": "b"}  # groups unused
    with pytest.raises(TargetError, match="not GROUP=MODEL"):
        parse_model_map("heavy=a,light", GROUPS)
    with pytest.raises(TargetError, match="named twice"):
        parse_model_map("heavy=a,heavy=b,light=c", GROUPS)


def test_the_key_comes_from_a_named_variable_never_from_the_flag() -> None:
    assert api_key("MY_KEY", {"MY_KEY": KEY}) == KEY
    assert api_key("", {}) is None
    with pytest.raises(TargetError, match="not set"):
        api_key("MY_KEY", {})
    with pytest.raises(TargetError, match="not an environment variable name") as caught:
        api_key(KEY.replace("-", "_") + "-x", {})
    assert "never the key itself" in str(caught.value)


def test_metrics_urls_are_checked() -> None:
    assert parse_metrics("http://127.0.0.1:1/metrics, http://127.0.0.1:2/metrics") == [
        "http://127.0.0.1:1/metrics", "http://127.0.0.1:2/metrics"]
    assert parse_metrics("") == []
    with pytest.raises(TargetError, match="--metrics"):
        parse_metrics("localhost:9000")


def test_describe_records_the_target_without_its_key() -> None:
    transport = models_endpoint([{"id": "served-a", "max_model_len": 2048}, {"id": "served-b"}])
    record, key = describe("http://127.0.0.1:9/v1", "MY_KEY", "heavy=served-a,light=served-b", "", GROUPS,
                           environ={"MY_KEY": KEY}, transport=transport)
    assert key == KEY
    assert record.url == "http://127.0.0.1:9/v1" and record.api_key_env == "MY_KEY"
    assert record.max_model_len == {"heavy": 2048, "light": None}
    assert KEY not in record.model_dump_json()
    unseen = " ".join(record.unseen)
    assert "absent, not zero" in unseen and "light" in unseen and "x-litellm-model-id" in unseen


def test_one_served_model_needs_no_model_flag() -> None:
    record, _ = describe("http://127.0.0.1:9", "", "", "", GROUPS, environ={}, transport=models_endpoint(
        [{"id": "only"}], key=None))
    assert record.models == {"heavy": "only", "light": "only"}


def test_errors_say_what_to_change() -> None:
    with pytest.raises(TargetError, match=r"refused the key in \$MY_KEY \(HTTP 401"):
        describe("http://127.0.0.1:9", "MY_KEY", "x", "", GROUPS, environ={"MY_KEY": "sk-wrong-key-xxxxxxxxxx"},
                 transport=models_endpoint([{"id": "x"}]))
    with pytest.raises(TargetError, match="refused no key.*--api-key-env"):
        describe("http://127.0.0.1:9", "", "x", "", GROUPS, environ={}, transport=models_endpoint([{"id": "x"}]))
    with pytest.raises(TargetError, match="does not serve nope; it lists: x"):
        describe("http://127.0.0.1:9", "", "nope", "", GROUPS, environ={}, transport=models_endpoint([{"id": "x"}], None))
    with pytest.raises(TargetError, match="serves 2 models"):
        describe("http://127.0.0.1:9", "", "", "", GROUPS, environ={},
                 transport=models_endpoint([{"id": "x"}, {"id": "y"}], None))


def test_an_unreachable_target_is_a_clear_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TargetError, match="unreachable.*server is up"):
        describe("http://127.0.0.1:9", "", "x", "", GROUPS, environ={}, transport=httpx.MockTransport(refuse))


def test_prompt_fit_is_checked_against_the_reported_context_only() -> None:
    mix = load_mix("dialogue")
    groups: list[str] = sorted({c.group for c in mix.classes.values()})
    models = dict.fromkeys(groups, "served")
    assert check_fits_target(mix, models, dict.fromkeys(groups, 1_000_000), None) == []
    warnings = check_fits_target(mix, models, dict.fromkeys(groups), None)
    assert warnings and all("not checked" in w for w in warnings)
    with pytest.raises(MixError, match="(?s)does not fit the target.*--max-model-len"):
        check_fits_target(mix, models, dict.fromkeys(groups, 16), None)
