"""CPU path: tokens/s through the full serving path vs llama-cpp-python called directly.

``python -m bench cpu_path [--rounds N] [--max-tokens N]`` (or ``python bench/bench_cpu_path.py``).

Both sides use the bundled SmolLM2-135M GGUF with the replica settings (``n_threads=1``,
``n_ctx=2048``, ``n_batch=256``), the same prompt, ``max_tokens`` and greedy decoding, and run
interleaved in one process run (direct, full, direct, full, …) so machine drift hits both alike:

* **direct** — ``llama_cpp.Llama.create_chat_completion`` in this process's main thread;
* **full path** — the official ``openai`` client → Conclave's OpenAI endpoint (uvicorn on
  127.0.0.1) → ``ServeRouter`` → Ray Serve handle → a model replica (2 replicas, 1 CPU each) →
  ``LlamaCppEngine``, one request at a time.

Tokens/s = completion tokens reported in ``usage`` / wall time of the request, summed over the
rounds. Checked: every request on both sides produced exactly ``max_tokens`` completion tokens and
stopped for length (greedy decoding of the same prompt), so both sides timed the same work. The ratio full/direct is the figure (goal >= 0.9). As extra context it also measures 8
concurrent requests through the full path, which spread over both replicas.

Prints JSON, writes ``bench/results/cpu_path.json`` and ``cpu_path.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "Write a short story about a lighthouse keeper and a storm."


@contextlib.contextmanager
def serve_http(app: Any) -> Iterator[str]:
    """uvicorn on 127.0.0.1 and a free port, in a thread of this process."""
    import uvicorn

    from conclave.controller.redis_server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _direct(llm: Any, max_tokens: int) -> tuple[int, float]:
    t = time.perf_counter()
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0.0, seed=0
    )
    dt = time.perf_counter() - t
    _check_full_length("direct", int(out["usage"]["completion_tokens"]), out["choices"][0]["finish_reason"], max_tokens)
    return int(out["usage"]["completion_tokens"]), dt


def _full(client: Any, model: str, max_tokens: int) -> tuple[int, float]:
    t = time.perf_counter()
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0.0, seed=0
    )
    dt = time.perf_counter() - t
    _check_full_length("full path", r.usage.completion_tokens if r.usage else 0, r.choices[0].finish_reason, max_tokens)
    return int(r.usage.completion_tokens), dt


def _check_full_length(side: str, tokens: int, finish: str | None, max_tokens: int) -> None:
    from bench._common import check

    check(
        tokens == max_tokens and finish == "length",
        f"{side}: a request produced {tokens} completion tokens (finish {finish}), expected {max_tokens} (length)",
    )


async def _concurrent(base_url: str, model: str, max_tokens: int, n: int) -> tuple[int, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    t = time.perf_counter()
    rs = await asyncio.gather(
        *(
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": PROMPT}],
                max_tokens=max_tokens,
                temperature=0.0,
                seed=i,
            )
            for i in range(n)
        )
    )
    elapsed = time.perf_counter() - t
    await client.close()
    for r in rs:
        _check_full_length(
            "full path, concurrent", r.usage.completion_tokens if r.usage else 0, r.choices[0].finish_reason, max_tokens
        )
    return sum(r.usage.completion_tokens for r in rs if r.usage), elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench cpu_path", description=__doc__.splitlines()[0] if __doc__ else None
    )
    ap.add_argument("--rounds", type=int, default=8, help="interleaved direct/full pairs")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrent", type=int, default=8)
    args = ap.parse_args(argv)

    import openai
    import ray
    from fastapi import FastAPI
    from llama_cpp import Llama
    from ray import serve

    from bench._common import machine
    from conclave.api.auth import Authenticator, install_authenticator
    from conclave.api.openai_compat import build_openai_router
    from conclave.cluster.defaults import DEFAULT_MODEL_NAME, default_model_spec, smollm2_path
    from conclave.cluster.deployment import deploy_models
    from conclave.cluster.pool import ServeRouter
    from conclave.controller.redis_server import free_port

    spec = default_model_spec()
    o = spec.options
    llm = Llama(
        model_path=str(smollm2_path()),
        n_threads=o["n_threads"],
        n_threads_batch=o["n_threads"],
        n_ctx=o["n_ctx"],
        n_batch=256,
        seed=0,
        verbose=False,
    )

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    specs = deploy_models([spec], app_name="bench-models")
    router = ServeRouter(specs, app_name="bench-models")
    app = FastAPI()
    install_authenticator(app, Authenticator.disabled())  # a local benchmark: no keys
    app.include_router(build_openai_router(lambda: router, default_model=DEFAULT_MODEL_NAME))

    with serve_http(app) as url:
        base = f"{url}/v1"
        client = openai.OpenAI(base_url=base, api_key="x", max_retries=0)
        # Warm-up: both replicas and the direct model load pages and caches.
        _direct(llm, 16)
        for _ in range(2):
            _full(client, DEFAULT_MODEL_NAME, 16)
        direct: list[tuple[int, float]] = []
        full: list[tuple[int, float]] = []
        for _ in range(args.rounds):
            direct.append(_direct(llm, args.max_tokens))
            full.append(_full(client, DEFAULT_MODEL_NAME, args.max_tokens))
        conc_tokens, conc_s = asyncio.run(_concurrent(base, DEFAULT_MODEL_NAME, args.max_tokens, args.concurrent))

    serve.delete("bench-models")
    ray.shutdown()

    def rate(rows: list[tuple[int, float]]) -> float:
        return sum(t for t, _ in rows) / sum(s for _, s in rows)

    d, f = rate(direct), rate(full)
    result: dict[str, Any] = {
        "benchmark": "cpu_path",
        "machine": machine(),
        "model": DEFAULT_MODEL_NAME,
        "settings": {"n_threads": o["n_threads"], "max_tokens": args.max_tokens, "rounds": args.rounds},
        "direct_tokens_per_s": round(d, 1),
        "full_path_tokens_per_s": round(f, 1),
        "ratio_full_over_direct": round(f / d, 3),
        "direct_per_request_s": [round(s, 3) for _, s in direct],
        "full_per_request_s": [round(s, 3) for _, s in full],
        "completion_tokens_direct": [t for t, _ in direct],
        "completion_tokens_full": [t for t, _ in full],
        "concurrent": {
            "requests": args.concurrent,
            "replicas": spec.replicas,
            "tokens_per_s": round(conc_tokens / conc_s, 1),
            "ratio_over_direct": round(conc_tokens / conc_s / d, 3),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpu_path.json").write_text(json.dumps(result, indent=2))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = ["direct\n(1 process)", "full path\n(sequential)", f"full path\n({args.concurrent} concurrent)"]
    values = [d, f, conc_tokens / conc_s]
    bars = ax.bar(labels, values, color=["#777777", "#2b6cb0", "#63b3ed"])
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom")
    ax.set_ylabel("completion tokens / s")
    ax.set_title(f"SmolLM2-135M on CPU: full path / direct = {f / d:.2f}")
    fig.tight_layout()
    fig.savefig(RESULTS / "cpu_path.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
