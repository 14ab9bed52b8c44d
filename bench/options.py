"""The options of one load run, in one model: `python -m bench run/ui` take them as flags, Locust's own
parser (and its web UI form) takes the same flags, and sweeps and the fidelity check build the
command line of the runs they start from them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from serve import settings

DEFAULT_MIX = "npc-cpu"
Client = Literal["lean", "openai"]  # the request paths bench/load/exchange.py registers


class LoadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mix: str = Field(DEFAULT_MIX, description="NPC traffic mix: a name in bench/mixes/, or a .toml path")
    npcs: int = Field(0, ge=0, description="override the mix shape's NPC / user count (0: keep)")
    duration_s: float = Field(0.0, ge=0, description="override the mix shape's duration (0: keep)")
    rate_rps: float = Field(0.0, ge=0, description="poisson shape: override the arrival rate (0: keep)")
    tick_policy: str = Field("", description="tick shape: what an NPC still awaiting its last reply does at a new "
                             "tick: overlap (asks again), skip, or cancel (the request in flight); empty: the mix's")
    results_dir: Path = Field(default_factory=lambda: settings().results,
                              description="where run folders go ($NPCBENCH_RESULTS)")
    scrape_interval_s: float = Field(2.0, gt=0, description="seconds between /metrics scrapes of the workers and the proxy")
    direct: str = Field("", description="send straight to this worker (e.g. light-0), bypassing the proxy; every "
                        "class of the mix must be of its group")
    client: Client = Field("lean", description="how the load generator sends requests: lean (gevent sockets, orjson; "
                        "a fraction of the SDK's CPU) or openai (the OpenAI SDK, as a studio's own client would)")
    cache: str = Field("keep", description="the workers' prefix caches at the start: keep (as earlier runs left "
                       "them; the manifest says whether they were warm) or reset (emptied through vLLM's "
                       "/reset_prefix_cache; the stack needs worker_dev_endpoints=true)")
    target: str = Field("", description="bench this OpenAI-compatible endpoint (its base URL, e.g. "
                        "http://127.0.0.1:8000/v1) instead of the stack `python -m serve up` runs")
    api_key_env: str = Field("", description="--target: the environment variable that holds its API key (the "
                             "variable's name, never the key; empty: send no key)")
    model: str = Field("", description="--target: the served model each group goes to (heavy=NAME,light=NAME), or one "
                       "NAME for all; empty: the one model the target lists")
    metrics: str = Field("", description="--target: Prometheus /metrics URL[,URL...] of its servers to scrape; "
                         "without, the server-side figures are absent (not zero)")
    tokenizer: str = Field("", description="--target: a folder with the served model's tokenizer and chat template, "
                           "to count prompts exactly against its max_model_len; without, they are estimated")

    # What a sweep varies, and the fields Locust's web form shows.
    LOAD_FIELDS: ClassVar = ("mix", "tick_policy", "npcs", "duration_s", "rate_rps")
    TICK_POLICIES: ClassVar = ("", "overlap", "skip", "cancel")
    CACHE_STATES: ClassVar = ("keep", "reset")
    CLIENTS: ClassVar = get_args(Client)

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: Any, *, locust: bool = False, mix_choices: list[str] | None = None) -> None:
        """Add every field as a flag to an argparse parser, or to Locust's (which shows some in its web UI)."""
        for name, field in cls.model_fields.items():
            kwargs: dict[str, Any] = {"default": field.get_default(call_default_factory=True), "help": field.description,
                                      "type": field.annotation if field.annotation in (int, float) else str}
            if name == "mix" and mix_choices:
                kwargs["choices"] = mix_choices
            if name == "tick_policy":
                kwargs["choices"] = cls.TICK_POLICIES
            if name == "cache":
                kwargs["choices"] = cls.CACHE_STATES
            if name == "client":
                kwargs["choices"] = cls.CLIENTS
            if locust:
                kwargs["include_in_web_ui"] = name in cls.LOAD_FIELDS
            parser.add_argument(cls.flag(name), **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoadOptions:
        return cls.model_validate({name: getattr(args, name) for name in cls.model_fields})

    def argv(self) -> list[str]:
        """These options as flags, for a `python -m bench run` or Locust command line."""
        return [part for name in type(self).model_fields for part in (self.flag(name), str(getattr(self, name)))
                if getattr(self, name) != ""]
