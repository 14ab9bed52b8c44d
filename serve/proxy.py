"""The LiteLLM proxy as a process: its config and environment rendered from the spec, its log. The supervisor
starts the stack's proxy with it, and `bench overhead` a second proxy beside the stack's."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from serve.process import Managed
from serve.render import litellm_command, litellm_config, proxy_env
from serve.spec import StackSpec


def proxy_process(spec: StackSpec, key: str, folder: Path, *, name: str = "proxy", prefix: str = "",
                  log: Path | None = None) -> Managed:
    """Write the proxy's config into `folder` (`<prefix>litellm.yaml`: it names the key's variable, never the key),
    empty its Prometheus folder (`<prefix>proxy-metrics`: counters of an earlier proxy would be summed in), and
    return the process, not yet started; its log is `log` or `<prefix>proxy.log` there."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{prefix}litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(spec), sort_keys=False))
    metrics = folder / f"{prefix}proxy-metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir()
    return Managed(name=name, url=spec.proxy_url(), health_path="/health/readiness",
                   command=litellm_command(spec, str(config)), env=proxy_env(spec, key, metrics),
                   log=log or folder / f"{prefix}proxy.log")
