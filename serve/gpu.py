"""NVIDIA GPUs: what this machine has (from `nvidia-smi`), how vLLM will divide each GPU's memory, and whether
a cuda profile fits, checked before any worker starts.

The memory plan follows vLLM 0.32's own sizing (`determine_available_memory` in vllm/v1/worker/gpu_worker.py
and `request_memory` in vllm/v1/worker/utils.py):

    KV bytes = total x gpu_memory_utilization - weights - peak activations - non-torch memory - CUDA-graph estimate
    blocks   = KV bytes // (block_size x KV bytes per token), of which vLLM keeps one as its null block

where `total` is the GPU's memory in GiB as the driver reports it (a "48 GB" card is 44.7 GiB at most; an L40S
reports about 44.5). The CUDA context of each process is outside that budget: vLLM's start-up snapshot is taken
after the context exists, and it refuses to start unless `total x utilization` is still free. Weights come from
the profile; the other terms can only be measured on a GPU, so they are stated estimates (`MemoryAssumptions`),
and every worker's start-up log has the real figures to replace them with.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import defaultdict

from pydantic import BaseModel, Field

from serve.spec import MAX_GPU_MEMORY_UTILIZATION_PER_GPU, StackSpec, WorkerSpec

GIB = 2**30
# PyPI's vllm==0.32.0 is built for CUDA 13 (it pins torch==2.13.0, which pulls cuda-toolkit 13): a driver that
# supports only CUDA 12 installs it and every worker then dies at start-up. CUDA 13.0 needs driver R580 or newer.
REQUIRED_CUDA = (13, 0)
GPU_BLOCK_SIZE = 16  # vLLM's default KV block on CUDA


class Gpu(BaseModel):
    """One GPU as `nvidia-smi --query-gpu` reports it."""

    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int = 0

    @property
    def memory_gib(self) -> float:
        return self.memory_total_mib / 1024

    def __str__(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.memory_gib:.1f} GiB)"


class GpuInventory(BaseModel):
    driver_version: str | None = None
    cuda_version: str | None = Field(None, description="the newest CUDA the driver supports (nvidia-smi's header)")
    gpus: list[Gpu] = Field(default_factory=list)


QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used,driver_version", "--format=csv,noheader,nounits"]


def parse_query(text: str) -> tuple[list[Gpu], str | None]:
    """The GPUs and driver version from QUERY's CSV output."""
    gpus, driver = [], None
    for line in text.strip().splitlines():
        index, name, total, used, driver = (field.strip() for field in line.split(","))
        gpus.append(Gpu(index=int(index), name=name, memory_total_mib=int(total),
                        memory_used_mib=int(used) if used.isdigit() else 0))
    return gpus, driver


def parse_cuda_version(text: str) -> str | None:
    """`CUDA Version: 13.0` from plain `nvidia-smi`'s header: the newest CUDA this driver runs."""
    match = re.search(r"CUDA Version\s*:\s*([0-9]+\.[0-9]+)", text)
    return match.group(1) if match else None


def inventory() -> GpuInventory:
    """This machine's NVIDIA GPUs; an empty inventory without `nvidia-smi` or when it finds none."""
    if not shutil.which("nvidia-smi"):
        return GpuInventory()
    try:
        query = subprocess.run(QUERY, capture_output=True, text=True, timeout=30)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return GpuInventory()
    if query.returncode != 0:
        return GpuInventory()
    gpus, driver = parse_query(query.stdout)
    return GpuInventory(driver_version=driver, cuda_version=parse_cuda_version(header.stdout), gpus=gpus)


# -- the memory plan ----------------------------------------------------------------------------------------


class MemoryAssumptions(BaseModel):
    """What only a GPU can measure, as estimates. Each worker's start-up log gives the real figure."""

    cuda_context_gib: float = Field(0.5, description="per process, outside vLLM's budget; 0.3-0.6 GiB with CUDA's "
                                    "lazy module loading. Check: nvidia-smi's per-process memory minus the budget")
    non_torch_gib: float = Field(0.3, description="inside the budget: cuBLAS and attention-backend workspaces "
                                 "(vLLM's `non_torch_increase`)")
    cuda_graph_gib: float = Field(0.5, description="vLLM's CUDA-graph estimate, subtracted since v0.21 unless "
                                  "--enforce-eager; the log's 'Estimated CUDA graph memory: X GiB total'")
    activation_bytes_per_token: float = Field(2.0, description="bytes per value of the profile run's activations "
                                              "(bf16/fp16); see `activation_gib`")


def activation_gib(spec: StackSpec, group_name: str, assumptions: MemoryAssumptions) -> float:
    """Peak activations of vLLM's profile run, which pushes max_num_batched_tokens dummy tokens through the model:
    per token the MLP's gate/up output and its product (3 x intermediate) and a few hidden-size buffers (4 x hidden),
    plus float32 logits and probabilities for max_num_seqs sequences. An estimate; the log's 'Available KV cache
    memory' shows what vLLM measured."""
    group = spec.groups[group_name]  # type: ignore[index]
    model = spec.models[group.model]
    if model.hidden_size is None or model.intermediate_size is None or model.vocab_size is None:
        raise ValueError(f"model {model.hf_id}: set hidden_size, intermediate_size and vocab_size (from its "
                         "config.json) to plan its GPU memory")
    tokens = batched_tokens(spec, group_name)
    per_token = (3 * model.intermediate_size + 4 * model.hidden_size) * assumptions.activation_bytes_per_token
    logits = group.max_num_seqs * model.vocab_size * 4 * 2
    return (tokens * per_token + logits) / GIB


def batched_tokens(spec: StackSpec, group_name: str) -> int:
    """--max-num-batched-tokens, or vLLM 0.32's default for `vllm serve` on a GPU under 70 GiB (2,048)."""
    return spec.groups[group_name].max_num_batched_tokens or 2048  # type: ignore[index]


class WorkerMemoryPlan(BaseModel):
    """How vLLM will divide one GPU worker's share, every term in GiB, with the KV tokens that are left."""

    worker: str
    group: str
    gpu_gib: float
    gpu_memory_utilization: float
    budget_gib: float
    weights_gib: float
    activations_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    kv_gib: float
    kv_bytes_per_token: int
    block_size: int
    kv_blocks: int = Field(description="as vLLM counts them (num_gpu_blocks), the null block included")
    kv_tokens: int = Field(description="blocks x block size: vLLM's 'GPU KV cache size' at start-up")
    max_model_len: int

    @property
    def full_sequences(self) -> float:
        """max_model_len-long sequences the cache holds at once, after the null block."""
        return (self.kv_blocks - 1) / math.ceil(self.max_model_len / self.block_size)


def kv_blocks(kv_space_bytes: float, bytes_per_token: int, block_size: int) -> int:
    """Whole KV blocks a space holds, as vLLM counts them (`available_memory // bytes_per_block`)."""
    return int(kv_space_bytes // (bytes_per_token * block_size))


def plan_worker(spec: StackSpec, worker: WorkerSpec, gpu_gib: float,
                assumptions: MemoryAssumptions | None = None, block_size: int = GPU_BLOCK_SIZE) -> WorkerMemoryPlan:
    """The memory plan of one worker of a cuda profile on a GPU of `gpu_gib` (as the driver reports it)."""
    assumptions = assumptions or MemoryAssumptions()
    group, model = spec.group_of(worker), spec.model_of(worker)
    utilization = group.gpu_memory_utilization or 0.0
    budget = gpu_gib * utilization
    graphs = 0.0 if group.enforce_eager else assumptions.cuda_graph_gib
    activations = activation_gib(spec, worker.group, assumptions)
    kv_gib = max(0.0, budget - model.weights_gib - activations - assumptions.non_torch_gib - graphs)
    per_token = spec.kv_bytes_per_token(worker.group)
    blocks = kv_blocks(kv_gib * GIB, per_token, block_size)
    return WorkerMemoryPlan(
        worker=worker.name, group=worker.group, gpu_gib=round(gpu_gib, 2), gpu_memory_utilization=utilization,
        budget_gib=round(budget, 3), weights_gib=model.weights_gib, activations_gib=round(activations, 3),
        non_torch_gib=assumptions.non_torch_gib, cuda_graph_gib=graphs, kv_gib=round(kv_gib, 3),
        kv_bytes_per_token=per_token, block_size=block_size, kv_blocks=blocks, kv_tokens=blocks * block_size,
        max_model_len=group.max_model_len,
    )


def plan(spec: StackSpec, gpu_gib: dict[int, float], assumptions: MemoryAssumptions | None = None
         ) -> list[WorkerMemoryPlan]:
    """Every started worker's plan, with each worker's GPU memory taken from `gpu_gib` {GPU index: GiB}."""
    return [plan_worker(spec, w, gpu_gib[w.gpu], assumptions) for w in spec.workers
            if not w.is_external and w.gpu is not None and w.gpu in gpu_gib]


# -- does a profile fit this machine? ----------------------------------------------------------------------


def driver_problems(machine: GpuInventory) -> list[str]:
    """Why this machine's NVIDIA driver cannot run vLLM 0.32's CUDA build; empty when it can."""
    if machine.cuda_version is None:
        return ["nvidia-smi does not say which CUDA version the driver supports; vLLM 0.32 needs "
                f"CUDA {REQUIRED_CUDA[0]}.{REQUIRED_CUDA[1]} (driver R580 or newer)"]
    if tuple(int(p) for p in machine.cuda_version.split(".")) < REQUIRED_CUDA:
        return [f"the NVIDIA driver {machine.driver_version} supports CUDA {machine.cuda_version}, but vLLM 0.32's "
                f"wheel is built for CUDA {REQUIRED_CUDA[0]}.{REQUIRED_CUDA[1]}: update the driver to R580 or newer "
                "(every worker would die at start-up)"]
    return []


def fit_problems(spec: StackSpec, machine: GpuInventory, assumptions: MemoryAssumptions | None = None) -> list[str]:
    """Why `spec`'s workers do not fit `machine`'s GPUs (count, free memory, KV for one full sequence), each with
    what to change; empty when they fit."""
    assumptions = assumptions or MemoryAssumptions()
    started = [w for w in spec.workers if not w.is_external and w.gpu is not None]
    if not started:
        return []
    if not machine.gpus:
        return [f"profile {spec.profile} needs NVIDIA GPUs and none is visible (`nvidia-smi`); "
                "use `--profile cpu` on this machine"]
    problems = []
    by_index = {gpu.index: gpu for gpu in machine.gpus}
    per_gpu: dict[int, list[WorkerSpec]] = defaultdict(list)
    for worker in started:
        per_gpu[worker.gpu].append(worker)  # type: ignore[index]
    missing = sorted(set(per_gpu) - set(by_index))
    if missing:
        problems.append(f"profile {spec.profile} runs workers on GPUs {sorted(per_gpu)}, but this machine has "
                        f"{len(machine.gpus)} ({', '.join(map(str, machine.gpus))}); GPUs {missing} are missing")
    for index, workers in sorted(per_gpu.items()):
        gpu = by_index.get(index)
        if gpu is None:
            continue
        share = sum(spec.group_of(w).gpu_memory_utilization or 0.0 for w in workers)
        free = (gpu.memory_total_mib - gpu.memory_used_mib) / 1024
        contexts = len(workers) * assumptions.cuda_context_gib
        if share * gpu.memory_gib + contexts > free:
            used = f", of which {gpu.memory_used_mib / 1024:.1f} GiB is already in use" if gpu.memory_used_mib else ""
            problems.append(
                f"{gpu}{used}: its workers ({', '.join(w.name for w in workers)}) take {share:.2f} of it "
                f"({share * gpu.memory_gib:.1f} GiB) and their CUDA contexts about {contexts:.1f} GiB more, "
                f"but {free:.1f} GiB is free; lower gpu_memory_utilization (the sum stays at or under "
                f"{MAX_GPU_MEMORY_UTILIZATION_PER_GPU} and leaves each process about "
                f"{assumptions.cuda_context_gib} GiB) or free the GPU")
        for worker in workers:
            p = plan_worker(spec, worker, gpu.memory_gib, assumptions)
            need_blocks = math.ceil(p.max_model_len / p.block_size) + 1
            if p.kv_blocks < need_blocks:
                need_gib = need_blocks * p.block_size * p.kv_bytes_per_token / GIB
                problems.append(
                    f"worker {worker.name} on {gpu}: {p.gpu_memory_utilization} of it is {p.budget_gib:.1f} GiB, "
                    f"which leaves {p.kv_gib:.2f} GiB of KV cache after {p.weights_gib} GiB of weights, "
                    f"~{p.activations_gib:.1f} GiB of activations, {p.non_torch_gib} GiB of workspaces and "
                    f"{p.cuda_graph_gib} GiB of CUDA graphs; one {p.max_model_len:,}-token sequence needs "
                    f"{need_gib:.2f} GiB: raise its gpu_memory_utilization, lower max_model_len, or use a "
                    "profile made for this GPU")
    return problems


def size_warnings(spec: StackSpec, machine: GpuInventory) -> list[str]:
    """GPUs smaller than the profile is sized for: it may start, but with a much smaller KV cache than planned."""
    used = {w.gpu for w in spec.workers if not w.is_external and w.gpu is not None}
    if spec.sized_for_gpu_gib is None:
        return []
    return [f"{gpu} is smaller than the {spec.sized_for_gpu_gib} GiB profile {spec.profile} is sized for: its "
            "workers keep less KV cache than planned (`python -m serve check` shows how much)"
            for gpu in machine.gpus if gpu.index in used and gpu.memory_gib < spec.sized_for_gpu_gib - 0.5]


def fitting_profiles(machine: GpuInventory, names: list[str]) -> list[str]:
    """The named cuda profiles that start on `machine` and are sized for GPUs no larger than its own."""
    from serve.spec import load_profile

    fits = []
    for name in names:
        spec = load_profile(name)
        if spec.device == "cuda" and not fit_problems(spec, machine) and not size_warnings(spec, machine):
            fits.append(name)
    return fits


def preflight_problems(spec: StackSpec, machine: GpuInventory, others: list[str]) -> list[str]:
    """Everything about this machine's GPUs that stops `spec`, with the profiles among `others` that would fit."""
    if not any(not w.is_external for w in spec.workers):
        return []
    if not machine.gpus:
        return fit_problems(spec, machine)
    problems = driver_problems(machine) + fit_problems(spec, machine)
    if problems:
        fits = [name for name in fitting_profiles(machine, others) if name != spec.profile]
        problems.append(f"profiles that fit this machine: {', '.join(fits)} (`--profile NAME`)" if fits else
                        f"none of the GPU profiles ({', '.join(others)}) fits this machine; copy the nearest one "
                        "and change what the lines above say")
    return problems
