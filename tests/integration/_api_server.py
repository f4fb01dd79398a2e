"""``python -m tests.integration._api_server``: the whole API (run API + OpenAI endpoint over the sim
engines) in its own process, so a test can watch that process's memory while it serves."""

from __future__ import annotations

import argparse

import uvicorn

from conclave.api.ingress import build_fastapi
from tests.integration._helpers import sim_settings


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = build_fastapi(sim_settings(args.prefix), args.redis_url, router_mode="local")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
