"""`python -m serve.sim --config JSON`: one simulated vLLM worker (the stack starts it for an `engine = "sim"` group)."""

from __future__ import annotations

import argparse

import uvicorn

from serve.sim.server import SimWorkerConfig, create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serve.sim", description=__doc__)
    parser.add_argument("--config", required=True, help="a SimWorkerConfig as JSON (serve/render.py renders it)")
    config = SimWorkerConfig.model_validate_json(parser.parse_args(argv).config)
    print(f"simulated worker {config.served_model_name} on http://{config.host}:{config.port}: "
          f"{config.engine.model_dump_json()}", flush=True)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
