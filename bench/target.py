"""An outside OpenAI-compatible endpoint to bench (`--target URL`): its flags parsed and checked, its key taken from
an environment variable, and what `GET /v1/models` says of it, all before any load starts.

    --target URL              the endpoint's base URL (with or without the trailing /v1)
    --api-key-env NAME        the environment variable holding its API key (never the key itself on a command line)
    --model heavy=A,light=B   which served model each group of the mix goes to; or one name for every group
    --metrics URL[,URL...]    Prometheus endpoints to scrape while it runs (optional; without, no server-side figures)

Nothing here assumes the project's own stack: no LiteLLM header, no vLLM-only route. What the target does not tell
(its context length, its servers' counters) is listed in `TargetRecord.unseen`, so a reader sees it is absent, not zero.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from bench.errors import MixError

MODELS_PATH = "/models"
# A name the project's key files use; only a suggestion in error messages.
KEY_ENV_EXAMPLE = "NPCBENCH_TARGET_KEY"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetError(MixError):
    """A target that cannot be benched as given; the message says what to change."""


def strip_credentials(url: str) -> str:
    """The URL without user:password@ and without a query string (where keys sometimes travel)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def base_url(url: str) -> str:
    """The target's API base, ending in /v1 (as the OpenAI clients take it), without credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"--target {strip_credentials(url)!r}: give an http(s) URL such as http://127.0.0.1:8000/v1")
    if parts.username or parts.password or parts.query:
        raise TargetError("--target: put no credentials or query string in the URL (it is recorded in the "
                          f"results); name the environment variable that holds the key with --api-key-env, e.g. "
                          f"--api-key-env {KEY_ENV_EXAMPLE}")
    clean = strip_credentials(url).rstrip("/")
    return clean if clean.endswith("/v1") else clean + "/v1"


def parse_model_map(text: str, groups: list[str]) -> dict[str, str]:
    """`heavy=A,light=B` (every group of the mix named) or `A` (one served model for all), as {group: model} for
    the mix's groups."""
    text = text.strip()
    if not text:
        raise TargetError("--model is empty: give the served model name (`--model NAME`) or one per group "
                          f"(`--model {','.join(f'{g}=NAME' for g in groups)}`)")
    if "=" not in text:
        return dict.fromkeys(groups, text)
    found: dict[str, str] = {}
    for item in text.split(","):
        group, sep, model = (part.strip() for part in item.partition("="))
        if not sep or not group or not model:
            raise TargetError(f"--model {text!r}: {item!r} is not GROUP=MODEL")
        if group in found:
            raise TargetError(f"--model {text!r}: group {group} is named twice")
        found[group] = model
    if missing := [g for g in groups if g not in found]:
        raise TargetError(f"--model {text!r} names no served model for group(s) {', '.join(missing)} of the mix; "
                          f"add {','.join(f'{g}=NAME' for g in missing)}")
    # A map may name groups this mix does not use (one map for a stack, mixes of some of its groups).
    return {g: m for g, m in found.items() if g in groups}


def parse_metrics(text: str) -> list[str]:
    """`URL[,URL...]` of Prometheus endpoints, each checked and stripped of credentials."""
    urls = [u.strip() for u in text.split(",") if u.strip()]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetError(f"--metrics {strip_credentials(url)!r}: give http(s) URLs such as http://127.0.0.1:8000/metrics")
        if parts.username or parts.password or parts.query:
            raise TargetError("--metrics: put no credentials or query string in the URL (it is recorded in the results)")
    return urls


def api_key(env_name: str, environ: dict[str, str] | None = None) -> str | None:
    """The key from the named environment variable; None when no variable is named (an endpoint without keys)."""
    if not env_name:
        return None
    if not ENV_NAME.match(env_name):
        raise TargetError(f"--api-key-env {env_name!r} is not an environment variable name; pass the variable's "
                          f"name (e.g. {KEY_ENV_EXAMPLE}), never the key itself")
    key = (os.environ if environ is None else environ).get(env_name)
    if not key:
        raise TargetError(f"--api-key-env {env_name}: that variable is not set (or empty) in this shell; "
                          f"`export {env_name}=...` first")
    return key


class ServedModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    max_model_len: int | None = Field(None, description="vLLM (and some others) report it; OpenAI's API does not")


class ModelList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[ServedModel] = []


def served_models(base: str, key: str | None, key_env: str, timeout_s: float = 10.0,
                  transport: httpx.BaseTransport | None = None) -> list[ServedModel]:
    """`GET {base}/models`: what the target serves. Unreachable, or refusing the key, is a clear error."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.get(base + MODELS_PATH, headers=headers)
    except httpx.HTTPError as exc:
        raise TargetError(f"target {base} is unreachable ({type(exc).__name__}: {exc}); check the URL and that the "
                          "server is up") from None
    if response.status_code in (401, 403):
        given = f"the key in ${key_env}" if key else "no key"
        hint = "check its value" if key else f"name the variable holding its key with --api-key-env {KEY_ENV_EXAMPLE}"
        raise TargetError(f"target {base} refused {given} (HTTP {response.status_code} on GET {MODELS_PATH}); {hint}")
    if not response.is_success:
        raise TargetError(f"target {base}: GET {MODELS_PATH} answered HTTP {response.status_code}; is this an "
                          "OpenAI-compatible base URL (it usually ends in /v1)?")
    try:
        return ModelList.model_validate_json(response.content).data
    except ValueError:
        raise TargetError(f"target {base}: GET {MODELS_PATH} did not answer an OpenAI model list; is this an "
                          "OpenAI-compatible base URL (it usually ends in /v1)?") from None


class TargetRecord(BaseModel):
    """What a run against an outside endpoint records of it: never the key, only the variable's name."""

    url: str = Field(description="the base URL, without credentials")
    api_key_env: str | None = Field(None, description="the environment variable the key came from (not the key)")
    models: dict[str, str] = Field(description="group -> served model name")
    max_model_len: dict[str, int | None] = Field(description="per group, the served model's context length as "
                                                 "GET /v1/models reported it; None: not reported")
    metrics: list[str] = Field(default_factory=list, description="the Prometheus endpoints scraped")
    unseen: list[str] = Field(default_factory=list, description="what the run could not see of the target")


def describe(url: str, key_env: str, model_text: str, metrics_text: str, groups: list[str],
             environ: dict[str, str] | None = None,
             transport: httpx.BaseTransport | None = None) -> tuple[TargetRecord, str | None]:
    """Every target flag checked and the target asked what it serves, before anything starts: the record for the
    manifest, and the key (kept apart from it)."""
    base = base_url(url)
    metrics = parse_metrics(metrics_text)
    key = api_key(key_env, environ)
    served = served_models(base, key, key_env, transport=transport)
    by_id = {m.id: m for m in served}
    if model_text:
        models = parse_model_map(model_text, groups)
    elif len(by_id) == 1:
        models = dict.fromkeys(groups, next(iter(by_id)))
    else:
        raise TargetError(f"target {base} serves {len(by_id)} models ({', '.join(by_id) or 'none listed'}): choose "
                          "with --model NAME, or --model " + ",".join(f"{g}=NAME" for g in groups))
    if by_id and (unknown := sorted({m for m in models.values() if m not in by_id})):
        raise TargetError(f"target {base} does not serve {', '.join(unknown)}; it lists: {', '.join(by_id)}")
    lengths = {g: by_id[m].max_model_len if m in by_id else None for g, m in models.items()}
    unseen = []
    if not metrics:
        unseen.append("server metrics: no --metrics given, so the servers' own counts (tokens, queue, KV cache, "
                      "prefix-cache hits) are absent, not zero")
    if missing := [g for g, n in lengths.items() if n is None]:
        unseen.append(f"context length of group(s) {', '.join(missing)}: GET /v1/models reports no max_model_len, "
                      "so prompt fit was not checked")
    unseen.append("which worker served each request: the target sends no x-litellm-model-id header unless it is a "
                  "LiteLLM proxy, so `worker` is unknown where absent")
    return TargetRecord(url=base, api_key_env=key_env or None, models=models, max_model_len=lengths,
                        metrics=[strip_credentials(m) for m in metrics], unseen=unseen), key


def metrics_sources(urls: list[str]) -> dict[str, str]:
    """{source name: server URL} for the scraper, which asks `{url}/metrics`: `server-0`, `server-1`, ..."""
    return {f"server-{i}": url.removesuffix("/").removesuffix("/metrics") for i, url in enumerate(urls)}
