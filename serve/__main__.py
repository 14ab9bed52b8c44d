"""`python -m serve`: start, inspect and stop the stack.

    python -m serve up [--profile cpu|gpu|FILE.toml] [--detach]   start it (foreground supervisor, or detached)
    python -m serve status [--json]                               what runs, where, and the proxy key
    python -m serve down                                          stop it, leaving no process behind
    python -m serve provision [--profile P]                       make the profile's local model folders
    python -m serve check [--profile P]                           validate a profile with vLLM's own parser
    python -m serve render [--profile P]                          print the commands and LiteLLM config
    python -m serve render --format k8s [--out DIR]               Kubernetes manifests (docs/how-to/kubernetes.md)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from serve import paths
from serve.process import pid_alive, probe
from serve.provision import PROVISIONERS
from serve.render import MASTER_KEY_ENV, litellm_config, vllm_env, worker_command
from serve.settings import settings
from serve.spec import SpecError, StackSpec, default_profile, load_profile
from serve.state import key_path, master_key, read_state, running_state, to_json


def fail(msg: str, code: int = 1) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def load(args: argparse.Namespace) -> StackSpec:
    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "proxy_host", None):
        overrides.append(f"proxy.host={args.proxy_host}")  # --proxy-host is --set proxy.host=..., validated alike
    return load_profile(args.profile or settings().profile or default_profile(), overrides)


def banner(proxy_url: str, key: str, spec: StackSpec, detached: bool = False) -> str:
    groups = "; ".join(
        f"{g} ({', '.join(w.name for w in spec.workers if w.group == g)})" for g in spec.groups
    )
    # The key goes to a terminal only: piped or logged output gets where to find it instead.
    shown = key if sys.stdout.isatty() else f"(not printed to a non-terminal; `python -m serve status --json` or {key_path()})"
    stop = ("It runs in the background: `python -m serve status`, `python -m serve down`." if detached
            else "Stop it with Ctrl-C here, or `python -m serve down` from another shell.")
    return f"""
Stack ready (profile {spec.profile}): {len(spec.workers)} vLLM workers behind the LiteLLM proxy
  base URL : {proxy_url}/v1
  groups   : {groups}
  key      : {shown}
  logs     : {paths.stack_dir() / 'logs'}

Call it with the OpenAI SDK (export {MASTER_KEY_ENV}=<key> first):

    import os
    from openai import OpenAI
    client = OpenAI(base_url="{proxy_url}/v1", api_key=os.environ["{MASTER_KEY_ENV}"])
    reply = client.chat.completions.create(
        model="light", messages=[{{"role": "user", "content": "Greet the player in one line."}}], max_tokens=40)
    print(reply.choices[0].message.content)

{stop}
"""


def cmd_up(args: argparse.Namespace) -> int:
    from serve.supervisor import Supervisor, preflight

    spec = load(args)
    if state := running_state():
        return fail(f"a stack is already running (profile {state.profile}, supervisor pid {state.supervisor_pid}); "
                    "stop it with `python -m serve down`")
    preflight(spec)
    key = master_key()
    if args.detach:
        return detach(args, spec, key)
    supervisor = Supervisor(spec, key, startup_timeout_s=args.startup_timeout)
    if settings().detached:
        return supervisor.run(banner=lambda: print("stack ready", flush=True))
    return supervisor.run(banner=lambda: print(banner(spec.proxy_url(), key, spec), flush=True))


def detach(args: argparse.Namespace, spec: StackSpec, key: str) -> int:
    """Run the supervisor in its own session, show its progress, return once the stack is ready (0) or failed (1)."""
    log = paths.stack_dir() / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "serve", "up", "--startup-timeout", str(args.startup_timeout)]
    if args.profile:
        argv += ["--profile", args.profile]
    if args.proxy_host:
        argv += ["--proxy-host", args.proxy_host]
    for override in args.set or []:
        argv += ["--set", override]
    env = {**os.environ, "NPCBENCH_DETACHED": "1", "NPCBENCH_SUPERVISOR_LOG": str(log)}  # see serve/settings.py
    with open(log, "w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, start_new_session=True)
    print(f"supervisor started in the background (pid {child.pid}, log: {log})", flush=True)
    try:
        return _follow(child, log, key, spec)
    except KeyboardInterrupt:  # Ctrl-C while waiting: the user no longer wants this stack
        print("\ninterrupted: stopping the stack that was starting ...", flush=True)
        os.kill(child.pid, signal.SIGTERM)
        child.wait()
        return 130


def _follow(child: subprocess.Popen, log: Path, key: str, spec: StackSpec) -> int:
    """Show the supervisor's log as it grows, until the stack is ready (0) or has failed (1)."""
    shown = 0
    while True:
        text = log.read_text(errors="replace")
        print(text[shown:], end="", flush=True)
        shown = len(text)
        state = read_state()
        mine = state if state is not None and state.supervisor_pid == child.pid else None
        if mine and mine.phase == "ready":
            print(banner(mine.proxy.url, key, spec, detached=True), flush=True)
            return 0
        if child.poll() is not None or (mine and mine.phase == "failed"):
            child.wait()
            print(log.read_text(errors="replace")[shown:], end="", flush=True)
            return fail(f"the stack did not become ready (supervisor exit code {child.returncode}); see {log}")
        time.sleep(0.5)


def cmd_status(args: argparse.Namespace) -> int:
    import httpx

    state = read_state()
    alive = state is not None and pid_alive(state.supervisor_pid)
    if state is None:
        if args.json:
            print(json.dumps({"phase": "stopped"}))
        return fail("no stack has been started here (`python -m serve up`)")
    if not alive and state.phase not in ("stopped", "failed"):
        state.phase = "stopped"
    data = json.loads(to_json(state, master_key()))
    with httpx.Client(timeout=2.0) as client:
        for worker in data["workers"]:
            worker["healthy"] = alive and probe(client, worker["url"] + "/health")
        data["proxy"]["healthy"] = alive and probe(client, data["proxy_url"] + "/health/readiness")
    if data.get("redis"):
        data["redis"]["healthy"] = alive and pid_alive(data["redis"]["pid"])
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"profile {state.profile}: {state.phase} (supervisor pid {state.supervisor_pid}, since {state.started_at})")
        redis = [data["redis"]] if data.get("redis") else []
        for proc in [{**data["proxy"], "name": "proxy", "url": state.base_url}, *data["workers"], *redis]:
            health = "healthy" if proc["healthy"] else "GAVE UP" if proc["gave_up"] else "down"
            group = f"group {proc['group']:6}" if "group" in proc else " " * 12
            print(f"  {proc['name']:8} {proc['url']:28} {health:8} {group} pid {proc['pid']}  "
                  f"restarts {proc['restarts']}  log {proc['log']}")
        if state.error:
            print(f"  error: {state.error}")
    return 0 if alive else 1


def cmd_down(args: argparse.Namespace) -> int:
    from serve.supervisor import stop_stack

    state = read_state()
    if state is None:
        print("no stack to stop")
        return 0
    if not stop_stack(state, timeout_s=args.timeout):
        return fail("some processes of the stack could not be stopped; see `python -m serve status`")
    print("stack stopped; no process of it is left")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    spec = load(args)
    for model in {m.hf_id: m for m in spec.models.values()}.values():
        if model.provision and model.local_dir:
            PROVISIONERS[model.provision](model.local_dir)
        else:
            print(f"{model.hf_id}: downloaded from the Hugging Face hub, not provisioned here "
                  f"(`hf download {model.hf_id}`)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from serve.render import sim_config
    from serve.sim.steptime import describe
    from serve.vllm_check import check_stack

    spec = load(args)
    for name, ns in check_stack(spec).items():
        print(f"{name}: vLLM accepts its command line (model {ns.model}, max_model_len {ns.max_model_len})")
    for worker in spec.workers:
        if spec.group_of(worker).engine == "sim":
            engine = sim_config(spec, worker).engine
            print(f"{worker.name}: simulated worker (serve/sim), {engine.num_blocks} KV blocks")
            print("\n".join(describe(engine.latency)))
    if spec.device == "cuda":
        return check_gpus(spec)
    return 0


def check_gpus(spec: StackSpec) -> int:
    """Each worker's memory plan on this machine's GPUs (or, with none, on the GPU the profile is sized for), then
    whether the profile fits them."""
    from serve.gpu import MemoryAssumptions, inventory, plan, preflight_problems, size_warnings
    from serve.spec import GPU_PROFILES

    machine = inventory()
    where = "this machine's GPUs" if machine.gpus else f"a {spec.sized_for_gpu_gib} GiB GPU (the profile's size)"
    memory = {g.index: g.memory_gib for g in machine.gpus} if machine.gpus else {
        w.gpu: spec.sized_for_gpu_gib or 0.0 for w in spec.workers if w.gpu is not None}
    print(f"\nmemory plan on {where}, GiB (vLLM's sizing; estimates: {MemoryAssumptions().model_dump()}):")
    print(f"  {'worker':9} {'gpu':>5} {'util':>5} {'budget':>7} {'weights':>8} {'activ.':>7} {'graphs':>7} "
          f"{'KV':>7} {'KV tokens':>10} {'full seqs':>9}")
    for p in plan(spec, memory):
        print(f"  {p.worker:9} {p.gpu_gib:5.1f} {p.gpu_memory_utilization:5.2f} {p.budget_gib:7.2f} "
              f"{p.weights_gib:8.2f} {p.activations_gib:7.2f} {p.cuda_graph_gib:7.2f} {p.kv_gib:7.2f} "
              f"{p.kv_tokens:10,} {p.full_sequences:9.1f}")
    if not machine.gpus:
        print("no NVIDIA GPU is visible here: the GPU count, driver and memory checks run on the GPU machine")
        return 0
    for warning in size_warnings(spec, machine):
        print(f"warning: {warning}")
    if problems := preflight_problems(spec, machine, GPU_PROFILES):
        return fail(f"profile {spec.profile} does not fit this machine:\n" + "\n".join(f"  - {p}" for p in problems))
    print(f"profile {spec.profile} fits this machine's GPUs (driver CUDA {machine.cuda_version})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import shlex

    spec = load(args)
    if args.format == "k8s":
        from serve import k8s

        return k8s.main(spec, args)
    for worker in spec.workers:
        if worker.is_external:
            print(f"# {worker.name}: external, {worker.external_url}")
            continue
        env = "".join(f"{k}={v} " for k, v in vllm_env(spec, worker).items())
        command = shlex.join(worker_command(spec, worker, vllm="vllm", python="python"))
        print(f"# {worker.name} ({worker.group})\n{env}{command}\n")
    print("# LiteLLM config.yaml")
    print(yaml.safe_dump(litellm_config(spec), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand with its flags (the CLI reference page, docs/reference/cli.md, is generated from it)."""
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    set_help = "override a profile field, e.g. --set groups.light.max_num_seqs=4 (repeatable)"
    profile_help = ("profile name (serve/profiles/*.toml) or a .toml path; default: $NPCBENCH_PROFILE, "
                    "else gpu if NVIDIA GPUs are visible, else cpu")

    up = sub.add_parser("up", help="start the stack")
    up.add_argument("--profile", help=profile_help)
    up.add_argument("--detach", action="store_true", help="return once the stack is ready; it keeps running")
    up.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for each start-up wave")
    up.add_argument("--proxy-host", help="interface the proxy listens on (default 127.0.0.1; 0.0.0.0 exposes it)")
    up.add_argument("--set", action="append", metavar="PATH=VALUE", help=set_help)
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show the running stack")
    status.add_argument("--json", action="store_true", help="machine-readable: base URL, key, workers")
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop the running stack")
    down.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a clean stop before SIGKILL")
    down.set_defaults(func=cmd_down)

    for name, func, text in (("provision", cmd_provision, "make the profile's local model folders"),
                             ("check", cmd_check, "validate the profile, its command lines with vLLM's own parser"),
                             ("render", cmd_render, "print the worker commands and the LiteLLM config")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--profile", help=profile_help)
        p.add_argument("--set", action="append", metavar="PATH=VALUE", help=set_help)
        p.set_defaults(func=func)
        if name == "render":
            from serve.k8s import K8sOptions

            p.add_argument("--format", choices=["text", "k8s"], default="text",
                           help="text: the commands and config, as the supervisor runs them; k8s: Kubernetes manifests")
            K8sOptions.add_arguments(p)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, ValueError) as exc:
        return fail(str(exc), 2)


if __name__ == "__main__":
    sys.exit(main())
