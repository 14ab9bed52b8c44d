"""Where the staged public GPU measurements are (../shared/gpu-public-data, see its README.md and SOURCE.md files).

Only derived figures are committed (serve/sim/step_fit.json, results/sim-validation/); the raw files stay there.
"""

from __future__ import annotations

import os
from pathlib import Path

from serve.paths import REPO_ROOT

ENV = "NPCBENCH_GPU_DATA"


def gpu_data_dir() -> Path:
    """`$NPCBENCH_GPU_DATA`, by default `<repo>/../shared/gpu-public-data`."""
    return Path(os.environ.get(ENV) or REPO_ROOT.parent / "shared" / "gpu-public-data")


def require_gpu_data() -> Path:
    """The data folder, or an error that says where it was looked for and how to point at it."""
    path = gpu_data_dir()
    if not (path / "README.md").exists():
        raise FileNotFoundError(f"the public GPU data is not at {path}: stage it there (see issue 24) or set "
                                f"{ENV} to its folder")
    return path
