"""`python -m bench worker`: a Locust worker process for a `bench run --master` on this host or another one.

    python -m bench worker --master-host 10.0.0.5 [--master-port 5557] [--proxy-url http://10.0.0.7:4000]

It takes everything about the run from the master: the mix as the master resolved and checked it, the stack's
state (its endpoints, no key), the load options. It needs no mix file, no stack state and no tokenizer of its own.
It sends its request records to the master, which writes the run's one folder; its NPCs' ids carry its Locust
worker index, so they stay unique across hosts. It exits when the master's run ends.

The proxy's key is never sent by the master nor given on a command line: a worker reads it from
`$LITELLM_MASTER_KEY` (or from `$NPCBENCH_HOME/master_key`, as on the stack's own host), and refuses to start
without one.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

from bench.cli import CommandError
from bench.cli._stack import LOCUSTFILE
from bench.load.child import run_until_done
from serve import settings

ORDER = 2
HELP = "a Locust worker for `bench run --master`, on this host or another"
KEY_ENV = "LITELLM_MASTER_KEY"
PROXY_URL_ENV = "NPCBENCH_WORKER_PROXY_URL"  # read by bench/locustfile.py's setup_from_master
STOP_BUDGET_S = 180.0  # from Ctrl-C to a worker that is gone: its requests in flight end, its last records go out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master-host", default="127.0.0.1", help="the host running `bench run --master`")
    parser.add_argument("--master-port", type=int, default=5557, help="its --master-bind-port")
    parser.add_argument("--proxy-url", default="", help="the proxy's URL as this host reaches it, when it is not the "
                        "one the master's stack state names (that one is often 127.0.0.1)")


def key_present() -> bool:
    return bool(os.environ.get(KEY_ENV)) or (settings().home / "master_key").exists()


def locust_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", args.master_host,
            "--master-port", str(args.master_port), "--loglevel", "WARNING"]


def run(args: argparse.Namespace) -> int:
    if not 0 < args.master_port < 65536:
        raise CommandError(f"--master-port {args.master_port}: not a port")
    if args.proxy_url and (urlsplit(args.proxy_url).scheme not in ("http", "https") or not urlsplit(args.proxy_url).netloc):
        raise CommandError(f"--proxy-url {args.proxy_url}: give a URL such as http://10.0.0.7:4000")
    if not key_present():
        raise CommandError(f"no proxy key on this host: set ${KEY_ENV} to the stack's key (`python -m serve status "
                           "--json` on its host shows it); the master does not send it")
    if args.proxy_url:
        os.environ[PROXY_URL_ENV] = args.proxy_url
    print(f"worker joining the master at {args.master_host}:{args.master_port}", flush=True)
    code = run_until_done(locust_command(args), STOP_BUDGET_S)
    return 0 if code in (0, 130) else code
