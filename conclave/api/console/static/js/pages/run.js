// One run: its facts and controls, its stages and steps live from the event stream, a burn-down
// chart per budget limit, the cost breakdown, pending approvals, and its output.

import { api, capabilities } from "../api.js";
import { announce, fmtTime, h, sleep, statusBadge } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { approvalCard } from "../parts/approval.js";
import { BurnDown } from "../parts/burndown.js";
import { costView } from "../parts/cost.js";
import { eventItem, Stages } from "../parts/events.js";
import { followEvents } from "../sse.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "budget_exhausted"]);
const REFRESH_MS = 3000;

export function notFound(main, id, err) {
  main.replaceChildren(
    h("h1", { tabindex: "-1", text: "Run not found" }),
    h("p", { class: "error", role: "alert", dataset: { state: "not-found" }, text: err?.message || `no run ${id}` }),
    h("p", {}, h("a", { href: "#/runs", text: "Back to the runs" })),
  );
}

function section(id, title, ...children) {
  return h("section", { id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h`, text: title }), ...children);
}

export async function render(main, params) {
  const id = params.get("id");
  const path = `/v1/runs/${encodeURIComponent(id)}`;
  const ac = new AbortController();
  let run;
  try {
    run = await api(path, { signal: ac.signal });
  } catch (err) {
    if (err.status === 404) {
      notFound(main, id, err);
      return () => ac.abort();
    }
    throw err;
  }
  const caps = await capabilities();
  const canPause = caps.has("POST", "/v1/runs/{run_id}/pause");
  const canResume = caps.has("POST", "/v1/runs/{run_id}/resume");
  const canApprovals = caps.has("GET", "/v1/runs/{run_id}/approvals");

  const heading = h("h1", { tabindex: "-1" }, "Run ", h("span", { class: "mono", text: id }));
  const badge = h("span", { id: "run-status" });
  const facts = h("dl", { class: "facts", id: "run-facts" });
  const message = h("p", { class: "action-result", role: "status" });
  const streamState = h("p", { class: "stream-state muted", id: "stream-state", "aria-live": "polite" });
  const buttons = {
    cancel: h("button", { type: "button", class: "danger", id: "btn-cancel", text: "Cancel run" }),
    pause: h("button", { type: "button", id: "btn-pause", text: "Pause" }),
    resume: h("button", { type: "button", id: "btn-resume", text: "Resume" }),
  };
  const actions = h(
    "div",
    { class: "actions" },
    buttons.cancel,
    buttons.pause,
    buttons.resume,
    h("a", { class: "button", href: `#/runs/${encodeURIComponent(id)}/workspace`, text: "Workspace" }),
  );
  const task = h("div", { class: "task" });
  const output = section("run-output", "Output");
  const approvals = section("run-approvals", "Waiting for you");
  const stagesEl = h("div", { id: "stages" });
  const charts = h("div", { class: "charts", id: "budget-charts" });
  const costEl = h("div", { id: "cost" });
  const list = h("ol", { class: "events", id: "events", "aria-label": "Events, oldest first" });
  const count = h("span", { class: "muted", id: "event-count" });
  approvals.hidden = true;
  output.hidden = true;

  main.replaceChildren(
    h("div", { class: "run-head" }, heading, badge),
    facts,
    actions,
    message,
    task,
    approvals,
    output,
    h(
      "div",
      { class: "run-grid" },
      section("run-stages", "Stages", stagesEl),
      section("run-budget", "Budget", charts),
    ),
    section("run-cost", "Cost", costEl),
    section("run-steps", "Steps", streamState, count, list),
  );

  const seen = new Set();
  const stages = new Stages();
  const burn = new BurnDown();
  let cost = null;
  let skew = null; // client clock minus server clock, from live events
  const serverNow = () => Date.now() / 1000 - (skew ?? 0);

  function showRun() {
    badge.replaceChildren(statusBadge(run.status));
    document.title = `${run.status} · ${id} · Conclave`;
    const spec = run.spec || {};
    const rows = [
      ["Kind", spec.kind],
      ["Model", spec.model || "default"],
      ["Created", fmtTime(run.created_at)],
      ["Started", fmtTime(run.started_at)],
      ["Finished", fmtTime(run.finished_at)],
      ["Attempts", run.attempts],
      ["Stop reason", run.stop_reason ? `${run.stop_reason}${run.stop_detail ? ` — ${run.stop_detail}` : ""}` : ""],
      ["Exhausted limit", run.exhausted_limit],
      ["Error", run.error],
      ["Tools", (spec.tools || []).join(", ")],
      ["Thread", spec.thread_id],
    ].filter(([, v]) => v !== undefined && v !== null && v !== "");
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })]));
    const terminal = TERMINAL.has(run.status);
    buttons.cancel.hidden = terminal || !!run.cancel_requested;
    buttons.pause.hidden = !canPause || run.status !== "running";
    buttons.resume.hidden = !canResume || run.status !== "paused";
    const input = typeof spec.input === "string" ? spec.input : (spec.input || []).map((m) => `${m.role}: ${m.content}`).join("\n\n");
    task.replaceChildren(h("h2", { class: "sr-only", text: "Task" }), h("p", { class: "task-text", text: input }));
    if (run.output) {
      output.hidden = false;
      const body = renderMarkdown(run.output);
      output.replaceChildren(
        output.firstChild,
        h("details", { open: run.output.length < 3000 }, h("summary", { text: `The run's answer (${run.output.length} characters)` }), body),
      );
    }
    burn.setWindow(run.started_at || run.created_at, run.finished_at);
  }

  function showCharts() {
    const now = run.finished_at ? Date.parse(run.finished_at) / 1000 : serverNow();
    charts.replaceChildren(...burn.render(now));
    stagesEl.replaceChildren(...stages.render(now));
  }

  async function refresh() {
    const [r, c] = await Promise.allSettled([api(path, { signal: ac.signal }), api(`${path}/cost`, { signal: ac.signal })]);
    if (r.status === "fulfilled") run = r.value;
    if (c.status === "fulfilled") {
      cost = c.value;
      const t = run.finished_at ? Date.parse(run.finished_at) / 1000 : serverNow();
      burn.reading(cost, t);
      costEl.replaceChildren(...costView(cost));
    }
    showRun();
    showCharts();
    await showApprovals();
  }

  async function showApprovals() {
    if (!canApprovals) return;
    if (run.status !== "waiting" && approvals.hidden) return;
    try {
      const res = await api(`${path}/approvals`, { signal: ac.signal });
      const items = res.approvals || [];
      const pending = items.filter((a) => a.status === "pending");
      approvals.hidden = pending.length === 0;
      const have = new Set([...approvals.querySelectorAll("[data-approval-id]")].map((el) => el.dataset.approvalId));
      if (pending.length !== have.size || pending.some((a) => !have.has(a.id))) {
        approvals.replaceChildren(approvals.firstChild, ...pending.map((a) => approvalCard(a, { showRun: false, onDecided: () => refresh() })));
      }
    } catch (err) {
      if (err.routeMissing) approvals.hidden = true;
    }
  }

  async function act(name) {
    const b = buttons[name];
    b.disabled = true;
    try {
      const res = await api(`${path}/${name}`, { method: "POST", signal: ac.signal });
      run = res.run || run;
      message.textContent = `${name}: ${res.result ?? "done"}`;
      announce(message.textContent);
      await refresh();
    } catch (err) {
      if (err.routeMissing) {
        b.hidden = true;
        message.textContent = `This server cannot ${name} runs yet.`;
      } else message.textContent = `${name} failed: ${err.message}`;
    } finally {
      b.disabled = false;
    }
  }
  for (const name of Object.keys(buttons)) buttons[name].addEventListener("click", () => act(name));

  let pendingRefresh = null;
  function refreshSoon() {
    if (pendingRefresh) return;
    pendingRefresh = setTimeout(() => {
      pendingRefresh = null;
      refresh().catch(() => {});
    }, 250);
  }

  let chartTimer = null;
  function onEvent(ev) {
    if (seen.has(ev.id)) return;
    seen.add(ev.id);
    list.append(eventItem(ev));
    count.textContent = `${seen.size} events`;
    if (ev.ts > 0 && !TERMINAL.has(run.status)) {
      const s = Date.now() / 1000 - ev.ts;
      if (skew === null || s < skew) skew = s;
    }
    stages.event(ev);
    burn.event(ev);
    if (ev.type.startsWith("run.") || ev.type.startsWith("approval.") || ev.type.startsWith("stage.")) refreshSoon();
    if (!chartTimer) {
      chartTimer = setTimeout(() => {
        chartTimer = null;
        showCharts();
      }, 300);
    }
  }

  showRun();
  await refresh();
  const follow = followEvents(id, {
    signal: ac.signal,
    onEvent,
    onState(state, detail) {
      const text = {
        open: "Live: following the event stream.",
        reconnecting: `Reconnecting… (${detail})`,
        finished: "The run has finished; all its events are shown.",
      }[state];
      streamState.textContent = text;
      streamState.dataset.state = state;
    },
    async ended(last) {
      const r = await api(path, { signal: ac.signal });
      return TERMINAL.has(r.status) && r.last_event_id <= last;
    },
  })
    .then(() => refresh())
    .catch((err) => {
      if (err.name !== "AbortError") streamState.textContent = `The event stream stopped: ${err.message}`;
    });

  (async () => {
    while (!ac.signal.aborted && !TERMINAL.has(run.status)) {
      await sleep(REFRESH_MS, ac.signal);
      if (ac.signal.aborted) return;
      if (!document.hidden) await refresh().catch(() => {});
    }
  })();
  void follow;
  return () => {
    ac.abort();
    clearTimeout(pendingRefresh);
    clearTimeout(chartTimer);
  };
}
