"""Code the LiteLLM proxy loads from its config (`render.litellm_config` names it): key check and request check.

- `authenticate`: LiteLLM's own auth answers a wrong key with 400 "No connected db" when it has no database
  (it would look the key up as a virtual key). The stack has no database and one key, so this
  replaces it: the master key gets in, anything else gets 401 and never reaches a worker.
- `request_check`: a pre-call hook that first enlarges the router's in-memory cache to `proxy.router_cache_items`
  (LiteLLM's is 200 entries with no setting to change it; evicted session pins move NPCs to other workers),
  then refuses what LiteLLM passes on unchecked and a worker would
  accept or choke on: `tool_choice="sometimes"` (vLLM answers it with 200), `messages` that are not a
  list of role-bearing objects (LiteLLM reports those as an APIConnectionError), tool parameters that
  are not a JSON Schema (vLLM reports "Invalid grammar specification").
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from typing import Any, Literal

from fastapi import HTTPException, Request
from jsonschema import Draft202012Validator, SchemaError
from litellm.constants import LITELLM_PROXY_MASTER_KEY_ALIAS
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serve.common import error_lines
from serve.render import MASTER_KEY_ENV, ROUTER_CACHE_ITEMS_ENV

CHAT_CALL_TYPES = {"completion", "acompletion"}


async def authenticate(request: Request, api_key: str) -> UserAPIKeyAuth:
    """LiteLLM `general_settings.custom_auth`: the master key or 401."""
    master_key = os.environ[MASTER_KEY_ENV]
    if not api_key or not secrets.compare_digest(api_key.encode(), master_key.encode()):
        raise HTTPException(status_code=401, detail="invalid or missing API key: send the stack's key as "
                                                    "`Authorization: Bearer <key>` (`python -m serve status`)")
    return UserAPIKeyAuth(api_key=LITELLM_PROXY_MASTER_KEY_ALIAS, user_role=LitellmUserRoles.PROXY_ADMIN)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]


class FunctionName(_Open):
    name: str


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: FunctionName


class ChatRequest(_Open):
    """The parts of an OpenAI chat request that are checked here; the rest is left to LiteLLM and vLLM."""

    messages: list[Message] = Field(min_length=1)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None


TOOL_CHOICES = """'none', 'auto', 'required' or {"type": "function", "function": {"name": ...}}"""


def request_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a chat request, in words for the client; None if nothing checked here is."""
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        fields = {error["loc"][0] for error in exc.errors()}
        if "tool_choice" in fields:
            return f"tool_choice must be {TOOL_CHOICES}, not {data['tool_choice']!r}"
        return "; ".join(error_lines(exc)[:3])
    tool_names = [t.get("function", {}).get("name") for t in data.get("tools") or [] if isinstance(t, dict)]
    if isinstance(request.tool_choice, NamedToolChoice) and request.tool_choice.function.name not in tool_names:
        return f"tool_choice names function {request.tool_choice.function.name!r}, which is not among tools {tool_names}"
    if request.tool_choice == "required" and not tool_names:
        return "tool_choice 'required' needs tools"
    for i, tool in enumerate(data.get("tools") or []):
        parameters = tool.get("function", {}).get("parameters") if isinstance(tool, dict) else None
        if isinstance(parameters, dict) and (problem := schema_problem(json.dumps(parameters, sort_keys=True))):
            return f"tools[{i}].function.parameters is not a valid JSON Schema: {problem}"
    return None


@functools.lru_cache(maxsize=256)  # an NPC sends the same few tool schemas with every request
def schema_problem(schema_json: str) -> str | None:
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as exc:
        return f"{exc.message} (at {'/'.join(map(str, exc.path)) or 'the top'})"
    return None


def size_router_cache(router: Any) -> None:
    """Give the proxy's router (a litellm Router, or None before it exists) an in-memory cache of
    $NPCBENCH_ROUTER_CACHE_ITEMS entries. LiteLLM's holds 200, shared by session pins, cooldowns and usage counts,
    and when full evicts the entries closest to expiry: the pins of the NPCs silent longest."""
    items = int(os.environ.get(ROUTER_CACHE_ITEMS_ENV) or 0)
    if router is not None and router.cache.in_memory_cache.max_size_in_memory < items:
        router.cache.update_in_memory_max_size(items)


class RequestCheck(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type) -> dict:
        from litellm.proxy import proxy_server  # loaded by now: it is what imports this module

        size_router_cache(proxy_server.llm_router)  # each request, before routing: the router may be rebuilt
        if call_type in CHAT_CALL_TYPES and (problem := request_problem(data)):
            raise HTTPException(status_code=400, detail=f"invalid chat request: {problem}")
        return data


request_check = RequestCheck()
