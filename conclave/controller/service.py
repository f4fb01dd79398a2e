"""``RunService``: what the API (and any other front door) does with runs, keys and the queue.

The HTTP layer in ``conclave.api`` only translates between HTTP and these calls — vLLM's protocol /
serving / router split — so the rules live here once: idempotent submission, tenant isolation (another
tenant's run is *not found*, never *forbidden*, so its existence is not revealed), confined workspace
paths, the event stream that ends with ``run.finished``, key hashing. Errors are the typed
``ServiceError``s of ``conclave.controller.errors``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator, Mapping

from conclave.budgets.cost import cost_from_snapshot
from conclave.config import Settings
from conclave.core.kinds import validate_spec
from conclave.core.store import QueueDepth, RunStore, spec_hash
from conclave.core.workspace import PathError, Workspace, confine, workspace_tarball
from conclave.schema import (
    ApiKey,
    CancelResponse,
    Cost,
    Event,
    NewKey,
    Run,
    RunPage,
    RunStatus,
    TaskSpec,
    WorkspaceFile,
    WorkspaceListing,
)

from .errors import Conflict, InvalidInput, NotFound
from .steer import SteerService, submit_to_thread
from .webhooks import WebhookService

__all__ = ["RunService", "hash_key"]


def hash_key(secret: str) -> str:
    """Keys are stored only as the SHA-256 of their secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class RunService:
    def __init__(self, store: RunStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # -- runs ------------------------------------------------------------------------------------
    async def submit(
        self,
        spec: TaskSpec,
        *,
        tenant: str,
        idempotency_key: str | None = None,
        trace: Mapping[str, str] | None = None,
        key_id: str | None = None,
    ) -> tuple[Run, bool]:
        """Queue a run (``SpecError`` when its kind rejects it). With an idempotency key a repeated
        submission returns the first run and False; a different task under the same key is a
        ``Conflict``. A new run is acknowledged only once it is durable. With a ``thread_id`` the run is
        the thread's next message (``conclave.controller.steer``; the thread is made if the tenant has none
        of that id, and its multitask policy applies)."""
        if idempotency_key:
            spec = spec.model_copy(update={"idempotency_key": idempotency_key})
        validate_spec(spec, self.settings.model_names())
        if spec.webhook is not None:  # an allowed destination, and a secret to sign with
            await WebhookService(self.store, self.settings).check_run_webhook(spec.webhook, tenant=tenant)
        if spec.thread_id:
            run, result = await submit_to_thread(self.store, spec, tenant=tenant, trace=trace, key_id=key_id)
            return run, result != "existing"
        h = spec_hash(spec)
        res = await self.store.submit(spec, tenant=tenant, spec_hash=h, trace=trace, key_id=key_id)
        if not res.created:
            if res.spec_hash != h:
                raise Conflict(
                    "idempotency_conflict",
                    f"idempotency key {spec.idempotency_key!r} was used for a different task (run {res.run.id})",
                )
            return res.run, False
        await self.store.durable()
        return res.run, True

    async def get(self, run_id: str, *, tenant: str) -> Run:
        run = await self.store.get(run_id, tenant=tenant)
        if run is None:
            raise NotFound("run_not_found", f"no run {run_id!r}")
        return run

    async def list_runs(
        self,
        *,
        tenant: str,
        status: RunStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        thread_id: str | None = None,
    ) -> RunPage:
        if thread_id is not None:
            steer = SteerService(self.store, self.settings)
            return await steer.list_runs(thread_id, tenant=tenant, status=status, kind=kind, limit=limit, cursor=cursor)
        return await self.store.list_runs(tenant=tenant, status=status, kind=kind, limit=limit, cursor=cursor)

    async def cancel(self, run_id: str, *, tenant: str) -> CancelResponse:
        """A queued run is cancelled at once; a running one is told within a second and ends with its
        partial result. Cancelling a finished run changes nothing."""
        result = await self.store.cancel(run_id, tenant=tenant)
        if result.outcome.value == "missing":
            raise NotFound("run_not_found", f"no run {run_id!r}")
        return CancelResponse(run=await self.get(run_id, tenant=tenant), result=result.label)

    async def cost(self, run_id: str, *, tenant: str) -> Cost:
        """The recorded breakdown of a finished run; the live one from the ledger otherwise."""
        run = await self.get(run_id, tenant=tenant)
        if run.cost is not None:
            return run.cost
        wall = run.spec.budget.wall_seconds if run.spec.budget else None
        spent = time.time() - run.started_at.timestamp() - run.idle_seconds if run.started_at else None
        return cost_from_snapshot(await self.store.ledger_snapshot(run_id), wall_cap_s=wall, wall_seconds=spent)

    async def events(self, run_id: str, *, tenant: str, after: int = 0, follow: bool = True) -> AsyncIterator[Event]:
        """The run's events after ``after``, oldest first. With ``follow`` it waits for new ones and ends
        after ``run.finished``; without, it ends with the last event there is."""
        await self.get(run_id, tenant=tenant)
        return self._events(run_id, after, follow)

    async def _events(self, run_id: str, after: int, follow: bool) -> AsyncIterator[Event]:
        last = after
        while True:
            batch = await self.store.events(run_id, after=last, count=500, block_ms=1000 if follow else None)
            for e in batch:
                last = e.id
                yield e
                if e.type == "run.finished":
                    return
            if not follow and len(batch) < 500:
                return
            if not batch:
                run = await self.store.get(run_id)
                if run is None or (run.status.terminal and run.last_event_id <= last):
                    return

    # -- workspaces ------------------------------------------------------------------------------
    async def workspace(self, run_id: str, *, tenant: str) -> WorkspaceListing:
        """Every file of the run's committed workspace, with sizes and line counts."""
        await self.get(run_id, tenant=tenant)
        files = await self.store.load_workspace(run_id)
        entries = Workspace(files).entries("", recursive=True) if files else []
        return WorkspaceListing(
            run_id=run_id,
            files=[WorkspaceFile(path=e.path, size=e.size, lines=e.lines) for e in entries if not e.is_dir],
            total_bytes=sum(len(v) for v in files.values()),
        )

    async def workspace_file(self, run_id: str, path: str, *, tenant: str) -> tuple[bytes, str]:
        """A file's bytes and media type. Paths are confined to the workspace (``InvalidInput`` naming
        ``path`` otherwise)."""
        await self.get(run_id, tenant=tenant)
        try:
            p = confine(path)
        except PathError as e:
            raise InvalidInput("invalid_path", str(e), field="path", value=path[:120]) from None
        data = await self.store.read_file(run_id, p)
        if data is None:
            raise NotFound("file_not_found", f"no file {p!r} in the workspace of run {run_id}")
        media = mimetypes.guess_type(p)[0] or ("text/markdown" if p.endswith(".md") else "application/octet-stream")
        if media.startswith("text/"):
            media += "; charset=utf-8"
        return data, media

    async def workspace_tarball(self, run_id: str, *, tenant: str) -> bytes:
        await self.get(run_id, tenant=tenant)
        return workspace_tarball(await self.store.load_workspace(run_id))

    # -- keys ------------------------------------------------------------------------------------
    async def authenticate(self, secret: str) -> ApiKey | None:
        """The key a secret belongs to, unless it is unknown or revoked."""
        info = await self.store.get_key(hash_key(secret))
        return None if info is None or info.revoked else info

    async def create_key(self, tenant: str, *, name: str = "", admin: bool = False) -> NewKey:
        secret = "cvk_" + secrets.token_urlsafe(32)
        info = ApiKey(id="key_" + secrets.token_hex(6), tenant=tenant, name=name, created_at=time.time(), admin=admin)
        await self.store.put_key(hash_key(secret), info)
        return NewKey(key=secret, info=info)

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        return await self.store.list_keys(tenant)

    async def revoke_key(self, key_id: str) -> ApiKey:
        if not await self.store.revoke_key(key_id):
            raise NotFound("key_not_found", f"no key {key_id!r}")
        return next(k for k in await self.store.list_keys() if k.id == key_id)

    # -- the service -----------------------------------------------------------------------------
    async def queue_depth(self) -> QueueDepth:
        return await self.store.queue_depth()
