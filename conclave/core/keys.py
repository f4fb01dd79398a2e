"""The key schema of the Redis store: every key a deployment writes, in one place.

``prefix`` namespaces everything (several deployments or test sessions can share one server). The Lua
scripts build the same names from the prefix (``controller/lua/common.lua`` documents the layout); nothing
else spells a key by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROUP", "OUTBOX_GROUP", "Keys"]

#: The consumer group of the run queue.
GROUP = "workers"
#: The consumer group of the webhook outbox (every worker's dispatcher reads in it).
OUTBOX_GROUP = "webhooks"


@dataclass(frozen=True)
class Keys:
    prefix: str = "cv"

    # -- one run ---------------------------------------------------------------------------------
    def run(self, rid: str) -> str:
        """hash: the run record."""
        return f"{self.prefix}:run:{rid}"

    def events(self, rid: str) -> str:
        """stream: the run's events, ids ``<seq>-0``."""
        return f"{self.prefix}:run:{rid}:ev"

    def steps(self, rid: str) -> str:
        """hash: committed step values by step key."""
        return f"{self.prefix}:run:{rid}:steps"

    def workspace(self, rid: str) -> str:
        """hash: workspace files, path → bytes."""
        return f"{self.prefix}:run:{rid}:ws"

    def ledger(self, rid: str) -> str:
        """hash: ``cap|used|resv|<scope>|<limit>`` and ``by|<dim>|<name>|<metric>``."""
        return f"{self.prefix}:run:{rid}:ledger"

    def holds(self, rid: str) -> str:
        """hash: reservation id → what it holds."""
        return f"{self.prefix}:run:{rid}:resv"

    def hold_expiry(self, rid: str) -> str:
        """zset: reservation id by expiry."""
        return f"{self.prefix}:run:{rid}:resvexp"

    def commits(self, rid: str) -> str:
        """hash: commit ids already applied (a retried commit is applied once)."""
        return f"{self.prefix}:run:{rid}:commits"

    # -- indexes and queues ----------------------------------------------------------------------
    def runs(self, tenant: str, *, status: str | None = None, kind: str | None = None) -> str:
        """zset: a tenant's runs by creation time (ms), all of them or one status's or one kind's."""
        if status is not None:
            return f"{self.prefix}:runs:{tenant}:s:{status}"
        if kind is not None:
            return f"{self.prefix}:runs:{tenant}:k:{kind}"
        return f"{self.prefix}:runs:{tenant}"

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"

    @property
    def queue(self) -> str:
        """stream: the run queue (consumer group ``workers``)."""
        return f"{self.prefix}:queue"

    @property
    def dead(self) -> str:
        """stream: dead-lettered runs and queue entries."""
        return f"{self.prefix}:dead"

    @property
    def cancel_channel(self) -> str:
        """pub/sub: run ids whose cancel was requested."""
        return f"{self.prefix}:cancel"

    @property
    def api_keys(self) -> str:
        """hash: hash of a key's secret → its record."""
        return f"{self.prefix}:apikeys"

    @property
    def api_key_ids(self) -> str:
        """hash: key id → hash of its secret."""
        return f"{self.prefix}:apikey_ids"

    # -- steering: pause / resume, approvals, threads, forks (conclave.core.store_steer) -----------
    def step_order(self, rid: str) -> str:
        """list: ``<last event id>|<step key>`` per committed step, in commit order."""
        return f"{self.prefix}:run:{rid}:order"

    def workspace_undo(self, rid: str) -> str:
        """stream: what each commit overwrote in the workspace (``t`` step index, ``p`` path, ``h`` had a
        file, ``v`` its bytes), so a fork can rebuild the workspace after any step."""
        return f"{self.prefix}:run:{rid}:wsundo"

    def run_approvals(self, rid: str) -> str:
        """hash: the run's approval records, ``<approval id>|<field>`` → value (one key per run)."""
        return f"{self.prefix}:run:{rid}:apr"

    def run_approval_order(self, rid: str) -> str:
        """list: the run's approval ids, in the order they were requested."""
        return f"{self.prefix}:run:{rid}:aprs"

    def run_approvals_pending(self, rid: str) -> str:
        """set: the run's pending approval ids."""
        return f"{self.prefix}:run:{rid}:aprpend"

    def tenant_approvals(self, tenant: str, *, pending: bool = False) -> str:
        """zset: ``<rid>|<approval id>`` by request time (ms), all of a tenant's or the pending ones."""
        return f"{self.prefix}:approvals:{tenant}" + (":pending" if pending else "")

    @property
    def approvals_due(self) -> str:
        """zset: ``<rid>|<approval id>`` by the (store clock) time its timeout passes."""
        return f"{self.prefix}:approvals:due"

    def thread(self, tenant: str, tid: str) -> str:
        """hash: a thread (``active``: the run it is busy with; ``n``: runs so far)."""
        return f"{self.prefix}:thread:{tenant}:{tid}"

    def thread_runs(self, tenant: str, tid: str) -> str:
        """zset: the thread's runs by their position in it."""
        return f"{self.thread(tenant, tid)}:runs"

    def thread_pending(self, tenant: str, tid: str) -> str:
        """list: enqueued runs waiting for the thread's active run to end, in order."""
        return f"{self.thread(tenant, tid)}:pending"

    def thread_dropped(self, tenant: str, tid: str) -> str:
        """set: runs rolled back, left out of the thread's conversation and workspace."""
        return f"{self.thread(tenant, tid)}:dropped"

    def threads(self, tenant: str) -> str:
        """zset: a tenant's thread ids by creation time (ms)."""
        return f"{self.prefix}:threads:{tenant}"

    # -- webhooks (the outbox) and schedules ------------------------------------------------------
    @property
    def outbox(self) -> str:
        """stream: one entry per (lifecycle event, destination) to deliver (consumer group ``webhooks``);
        written by ``outbox.lua`` in the call that commits the event."""
        return f"{self.prefix}:outbox"

    def webhook_subscriptions(self, tenant: str) -> str:
        """hash: subscription id → its record (JSON: url, events, description, created_at)."""
        return f"{self.prefix}:wh:subs:{tenant}"

    def webhook_secret(self, tenant: str) -> str:
        """hash: the tenant's signing secrets: ``current``, ``previous``, ``previous_until``."""
        return f"{self.prefix}:wh:secret:{tenant}"

    def delivery(self, did: str) -> str:
        """hash: one delivery's record (``did`` = ``<rid>.<seq>@<destination>``)."""
        return f"{self.prefix}:wh:dlv:{did}"

    def deliveries(self, tenant: str) -> str:
        """zset: the tenant's delivery ids by creation time (ms)."""
        return f"{self.prefix}:wh:dlvs:{tenant}"

    def dead_deliveries(self, tenant: str) -> str:
        """zset: the tenant's dead-lettered delivery ids by the time they died (ms)."""
        return f"{self.prefix}:wh:dead:{tenant}"

    @property
    def tenants(self) -> str:
        """set: every tenant that has submitted a run (added by ``submit.lua``; the gauges read it)."""
        return f"{self.prefix}:tenants"

    def schedule(self, sid: str) -> str:
        """hash: a schedule (``spec`` JSON, ``status``, ``cursor`` = last tick claimed, ``pending`` tick…)."""
        return f"{self.prefix}:sched:{sid}"

    def schedules(self, tenant: str) -> str:
        """zset: the tenant's schedule ids by creation time (ms)."""
        return f"{self.prefix}:scheds:{tenant}"

    @property
    def schedules_due(self) -> str:
        """zset: active schedule ids by the unix time of their next tick."""
        return f"{self.prefix}:sched:due"
