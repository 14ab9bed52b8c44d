"""Settings from `NPCBENCH_*` environment variables, read in this one place with pydantic-settings.

Precedence: a command-line flag, where there is one (`--profile`, `--results-dir`), wins over its variable,
and the variable over the default here. `NPCBENCH_ENV`, read by serve/tasks.py before any package is
installed, is the one variable outside this model.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NPCBENCH_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".cache" / "npcbench",
                       description="state, logs, the generated key, and (below it) models")
    models: Path | None = Field(None, description="provisioned model folders; default $NPCBENCH_HOME/models")
    profile: str | None = Field(None, description="the profile when --profile is not given; default: gpu with "
                                "NVIDIA GPUs, else cpu")
    results: Path = Field(Path("results"), description="where `python -m bench` writes run folders")
    # Set by `python -m serve up --detach` for the supervisor it starts in the background.
    detached: bool = False
    supervisor_log: str | None = None


def settings() -> Settings:
    """The settings as the environment has them now (tests and `up --detach` change it)."""
    return Settings()
