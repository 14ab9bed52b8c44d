"""Where npcbench keeps what is not in git: provisioned models and the running stack's state."""

from __future__ import annotations

import sys
from pathlib import Path

from serve.settings import settings

REPO_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """`$NPCBENCH_HOME`, by default `~/.cache/npcbench`."""
    return settings().home


def models_dir() -> Path:
    """`$NPCBENCH_MODELS`, by default `$NPCBENCH_HOME/models`: provisioned model folders."""
    return settings().models or home() / "models"


def stack_dir() -> Path:
    """State, config and logs of the stack that `python -m serve up` runs."""
    return home() / "stack"


def portable(text: str) -> str:
    """`text` without this machine's paths, for what a committed result records (commands, tokenizer folders):
    `$NPCBENCH_HOME` for the home folder, commands of this environment by their name, and repository paths
    relative to its root."""
    for local, shown in ((str(Path(sys.executable).parent) + "/", ""), (str(REPO_ROOT) + "/", ""),
                         (str(home()), "$NPCBENCH_HOME")):
        text = text.replace(local, shown)
    return text
