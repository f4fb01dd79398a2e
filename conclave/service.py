"""The local service behind ``conclave up``: Valkey, a Ray head, and three Serve applications.

Everything started here is stopped here, in reverse order. Each piece says where it is, so the
CLI can show the user what runs and on which address.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from conclave.config import Settings
from conclave.controller.redis_server import EmbeddedRedis, RedisStartError

__all__ = ["LocalService", "ServiceInfo", "StartError"]

log = logging.getLogger(__name__)


class StartError(RuntimeError):
    pass


@dataclass
class ServiceInfo:
    api_url: str
    redis_url: str
    redis_embedded: bool
    redis_data: str | None
    ray_address: str
    models: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 0
    auth: bool = False


class LocalService:
    def __init__(self, settings: Settings, *, router: str = "serve") -> None:
        self.settings = settings
        self.router = router
        self.redis: EmbeddedRedis | None = None
        self._ray_started = False
        self.info: ServiceInfo | None = None

    def _redis_url(self, say: Callable[[str], None]) -> tuple[str, bool]:
        if self.settings.redis_url:
            return self.settings.redis_url, False
        self.redis = EmbeddedRedis(self.settings.data_dir, port=self.settings.redis_port)
        say(f"starting Valkey on 127.0.0.1:{self.redis.port} (data in {self.settings.data_dir}, append-only)")
        try:
            self.redis.start()
        except RedisStartError as e:
            raise StartError(f"could not start the bundled Valkey: {e}") from None
        return self.redis.url, True

    def _check_redis(self, url: str) -> None:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.exceptions.RedisError as e:
            raise StartError(f"Redis at {url} is unreachable: {e}") from None

    def start(self, say: Callable[[str], None] = log.info) -> ServiceInfo:
        import ray
        from ray import serve

        url, embedded = self._redis_url(say)
        self._check_redis(url)
        s = self.settings
        settings_args = s.model_dump()  # python mode: secrets travel to the replicas unmasked (pickled by Ray)
        settings_args["redis_url"] = url
        need = sum(m.num_cpus * (m.autoscaling.max_replicas if m.autoscaling else m.replicas) for m in s.models)
        if not ray.is_initialized():
            say("starting Ray" + (f" (joining {s.ray_address})" if s.ray_address else " (local head)"))
            if s.ray_address:
                ray.init(address=s.ray_address, include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(
                    address="local",
                    num_cpus=max(os.cpu_count() or 1, int(need + 0.999)),
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                )
            self._ray_started = True
        ray_address = ray.get_runtime_context().gcs_address
        serve.start(http_options={"host": s.api_host, "port": s.api_port})
        from conclave.cluster.deployment import build_app as models_app

        say(f"deploying models: {', '.join(m.name for m in s.models)}")
        serve.run(
            models_app({"models": [m.model_dump(mode="json") for m in s.models]}), name="models", route_prefix=None
        )
        from conclave.controller.serve_worker import build_app as workers_app

        say(f"starting {s.workers} worker(s)")
        serve.run(
            workers_app({"workers": s.workers, "settings": settings_args, "redis_url": url, "router": self.router}),
            name="workers",
            route_prefix=None,
        )
        from conclave.api.ingress import build_app as api_app

        serve.run(
            api_app({"settings": settings_args, "redis_url": url, "router": self.router}), name="api", route_prefix="/"
        )
        api_url = f"http://{s.api_host}:{s.api_port}"
        self._wait_http(api_url + "/healthz")
        self.info = ServiceInfo(
            api_url=api_url,
            redis_url=url,
            redis_embedded=embedded,
            redis_data=str(s.data_dir) if embedded else None,
            ray_address=ray_address,
            models=[{"name": m.name, "engine": m.engine, "replicas": m.replicas} for m in s.models],
            workers=s.workers,
            auth=s.auth,
        )
        return self.info

    @staticmethod
    def _wait_http(url: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.2)
        raise StartError(f"the API did not answer at {url} within {timeout:.0f} s ({last})")

    def stop(self) -> None:
        try:
            import ray
            from ray import serve

            if ray.is_initialized():
                try:
                    serve.shutdown()  # type: ignore[no-untyped-call]
                except Exception as e:  # noqa: BLE001 - best effort on the way out
                    log.warning("serve shutdown: %s", e)
                if self._ray_started:
                    ray.shutdown()
        finally:
            if self.redis is not None:
                self.redis.stop()
                self.redis = None
