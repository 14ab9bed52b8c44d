"""The key check and request check the LiteLLM proxy loads (serve/proxy_hooks.py), as pure functions."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException
from litellm import Router
from litellm.proxy.types_utils.utils import get_instance_fn

from serve import proxy_hooks
from serve.render import MASTER_KEY_ENV, ROUTER_CACHE_ITEMS_ENV, litellm_config
from serve.spec import load_profile

KEY = "sk-npc-test-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "scan_sector", "parameters": {"type": "object"}}}]


def test_the_config_names_load_with_litellms_own_loader(tmp_path) -> None:
    config = litellm_config(load_profile("cpu"))
    config_file = str(tmp_path / "litellm.yaml")
    assert get_instance_fn(config["general_settings"]["custom_auth"], config_file) is proxy_hooks.authenticate
    assert get_instance_fn(config["litellm_settings"]["callbacks"][1], config_file) is proxy_hooks.request_check


def test_only_the_master_key_gets_in(monkeypatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, KEY)
    granted = asyncio.run(proxy_hooks.authenticate(None, KEY))
    assert granted.user_role == "proxy_admin" and granted.api_key != KEY  # the key itself is not carried on
    for wrong in ["", "sk-1234", KEY[:-1], KEY + "0"]:
        with pytest.raises(HTTPException) as info:
            asyncio.run(proxy_hooks.authenticate(None, wrong))
        assert info.value.status_code == 401


@pytest.mark.parametrize("request_body", [
    {"messages": HI},
    {"messages": HI, "tool_choice": "auto", "tools": TOOLS},
    {"messages": HI, "tool_choice": "required", "tools": TOOLS},
    {"messages": HI, "tool_choice": {"type": "function", "function": {"name": "scan_sector"}}, "tools": TOOLS},
    {"messages": [{"role": "system", "content": "x"}, *HI], "temperature": 0, "stream": True},
])
def test_good_requests_pass(request_body) -> None:
    assert proxy_hooks.request_problem(request_body) is None


@pytest.mark.parametrize("request_body, says", [
    ({"messages": HI, "tool_choice": "sometimes", "tools": TOOLS}, "tool_choice"),
    ({"messages": HI, "tool_choice": {"type": "function", "function": {"name": "fly"}}, "tools": TOOLS}, "'fly'"),
    ({"messages": HI, "tool_choice": "required"}, "needs tools"),
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"content": "no role"}]}, "role"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
])
def test_bad_requests_are_named(request_body, says: str) -> None:
    problem = proxy_hooks.request_problem(request_body)
    assert problem and says in problem, problem


def test_the_hook_refuses_with_400_and_passes_good_requests_unchanged() -> None:
    hook = proxy_hooks.request_check
    data = {"messages": HI, "model": "light"}
    assert asyncio.run(hook.async_pre_call_hook(None, None, data, "acompletion")) is data
    with pytest.raises(HTTPException) as info:
        asyncio.run(hook.async_pre_call_hook(None, None, {"messages": "hi"}, "acompletion"))
    assert info.value.status_code == 400 and "messages" in info.value.detail
    # Only chat requests are checked: an embeddings body has no messages.
    assert asyncio.run(hook.async_pre_call_hook(None, None, {"input": "x"}, "aembedding")) == {"input": "x"}


def test_tool_parameters_must_be_a_json_schema() -> None:
    bad = [{"type": "function", "function": {"name": "x", "parameters": {"type": "object", "properties": {
        "sector": {"type": "string", "maxLength": -1}}}}}]
    problem = proxy_hooks.request_problem({"messages": HI, "tools": [*TOOLS, *bad]})
    assert problem.startswith("tools[1].function.parameters is not a valid JSON Schema") and "maxLength" in problem


def pins_kept(router: Router, npcs: int) -> int:
    """How many of `npcs` session pins, set one after another, the router's cache still holds."""
    keys = [f"deployment_affinity:v1:session:light:unscoped:npc-{i}" for i in range(npcs)]
    for key in keys:
        router.cache.in_memory_cache.set_cache(key, {"model_id": "light-0"}, ttl=3600)
    return sum(router.cache.in_memory_cache.get_cache(key) is not None for key in keys)


def a_router() -> Router:
    return Router(model_list=[{"model_name": "light", "litellm_params": {"model": "hosted_vllm/m",
                                                                        "api_base": "http://127.0.0.1:9/v1"}}])


def test_litellms_own_router_cache_drops_pins_beyond_200() -> None:
    assert pins_kept(a_router(), 300) < 300  # what the hook is for; if this fails, LiteLLM changed its cache


def test_the_hook_gives_the_router_room_for_every_npcs_pin_before_routing(monkeypatch) -> None:
    from litellm.proxy import proxy_server

    monkeypatch.setenv(ROUTER_CACHE_ITEMS_ENV, "1000")
    router = a_router()
    monkeypatch.setattr(proxy_server, "llm_router", router)
    asyncio.run(proxy_hooks.request_check.async_pre_call_hook(None, None, {"messages": HI}, "acompletion"))
    assert pins_kept(router, 900) == 900
    monkeypatch.setattr(proxy_server, "llm_router", None)  # before the proxy has built its router: nothing to do
    asyncio.run(proxy_hooks.request_check.async_pre_call_hook(None, None, {"messages": HI}, "acompletion"))
