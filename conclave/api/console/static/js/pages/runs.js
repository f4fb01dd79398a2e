// The runs list: the tenant's runs newest first, a page at a time (`GET /v1/runs`), filtered by
// status, kind and thread where the server filters them, refreshed every few seconds. Rows of
// active runs also show their stage (the latest `stage.*` event) and their running cost (the
// ledger), read only when the run has new events.

import { api, capabilities, DEFAULT_STATUSES, query } from "../api.js";
import { fill, fmtAge, fmtInt, fmtUsd, h, sleep, statusBadge } from "../dom.js";
import { SseParser } from "../sse.js";

const REFRESH_MS = 3000;
const PAGE = 50;
const KNOWN_KINDS = ["agent", "chat", "ensemble", "research"];
const ACTIVE = new Set(["queued", "running", "waiting", "paused"]);

function excerpt(spec) {
  const input = spec?.input;
  const text = typeof input === "string" ? input : Array.isArray(input) ? input.filter((m) => m.role === "user").pop()?.content ?? "" : "";
  return text.length > 90 ? text.slice(0, 87) + "…" : text;
}

/** The stage a run is in, from the tail of its event stream. */
async function stageOf(run, signal) {
  const after = Math.max(0, run.last_event_id - 50);
  const res = await api(`/v1/runs/${encodeURIComponent(run.id)}/events${query({ after, follow: "false" })}`, {
    raw: true,
    signal,
    headers: { Accept: "text/event-stream" },
  });
  let stage = null;
  const parser = new SseParser((msg) => {
    if (!msg.type.startsWith("stage.")) return;
    try {
      const d = JSON.parse(msg.data).data || {};
      stage = msg.type === "stage.started" ? d.stage : `${d.stage} done`;
    } catch {
      // not an event
    }
  });
  parser.feed(await res.text());
  parser.feed("\n\n");
  return stage;
}

export async function render(main, params) {
  const ac = new AbortController();
  const f = {
    status: params.get("status") || "",
    kind: params.get("kind") || "",
    thread_id: params.get("thread_id") || "",
    cursor: params.get("cursor") || "",
  };
  // The OpenAPI document says which filters this server has. The first page does not wait for it
  // (its first build is the slowest request of a fresh server) unless the URL asks for one.
  let caps = f.kind || f.thread_id ? await capabilities() : null;
  const canKind = () => !!caps?.hasParam("GET", "/v1/runs", "kind");
  const canThread = () => !!caps?.hasParam("GET", "/v1/runs", "thread_id");

  const statusOptions = (list) => [
    h("option", { value: "", text: "any status" }),
    list.map((s) => h("option", { value: s, text: s.replace("_", " "), selected: s === f.status })),
  ];
  const status = h("select", { id: "f-status", name: "status" }, statusOptions(DEFAULT_STATUSES));
  let kind = null;
  let thread = null;
  const submit = h("button", { type: "submit", text: "Filter" });
  const filters = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter runs",
      on: {
        submit(e) {
          e.preventDefault();
          location.hash = `#/runs${query({ status: status.value, kind: kind?.value.trim(), thread_id: thread?.value.trim() })}`;
        },
      },
    },
    h("div", { class: "field inline" }, h("label", { for: "f-status", text: "Status" }), status),
    submit,
  );
  function addFilters() {
    if (caps.statuses.join() !== DEFAULT_STATUSES.join()) fill(status, statusOptions(caps.statuses));
    if (canKind() && !kind) {
      kind = h("input", { id: "f-kind", name: "kind", list: "f-kinds", value: f.kind, autocomplete: "off", size: 12 });
      submit.before(h("div", { class: "field inline" }, h("label", { for: "f-kind", text: "Kind" }), kind, h("datalist", { id: "f-kinds" }, KNOWN_KINDS.map((k) => h("option", { value: k })))));
    }
    if (canThread() && !thread) {
      thread = h("input", { id: "f-thread", name: "thread_id", value: f.thread_id, autocomplete: "off", size: 18 });
      submit.before(h("div", { class: "field inline" }, h("label", { for: "f-thread", text: "Thread" }), thread));
    }
  }
  if (caps) addFilters();
  status.addEventListener("change", () => filters.requestSubmit());

  const live = h("p", { class: "live muted", id: "runs-live" });
  const tbody = h("tbody", { id: "runs-body" });
  const table = h(
    "table",
    { class: "runs", "aria-describedby": "runs-live" },
    h("caption", { class: "sr-only", text: "Runs, newest first" }),
    h(
      "thead",
      {},
      h("tr", {}, ["Run", "Status", "Kind", "Stage", "Age", "Tokens", "Cost", "Task"].map((t) => h("th", { scope: "col", text: t }))),
    ),
    tbody,
  );
  const pager = h("nav", { class: "pager", "aria-label": "Pages of runs" });
  const empty = h("p", { class: "empty", hidden: true }, "No runs here yet. ", h("a", { href: "#/submit", text: "Submit one" }), ".");
  main.replaceChildren(h("h1", { tabindex: "-1", text: "Runs" }), filters, live, table, empty, pager);

  const rows = new Map(); // run id → {tr, cells}
  const liveInfo = new Map(); // run id → {lastEventId, stage, cost}

  function rowFor(run) {
    let r = rows.get(run.id);
    if (!r) {
      const cells = {};
      const tr = h("tr", { dataset: { runId: run.id } });
      const link = h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, class: "mono", text: run.id });
      tr.append(h("th", { scope: "row" }, link));
      for (const k of ["status", "kind", "stage", "age", "tokens", "cost", "task"]) {
        cells[k] = h("td", { class: `col-${k}` });
        tr.append(cells[k]);
      }
      r = { tr, cells };
      rows.set(run.id, r);
    }
    return r;
  }

  function update(run) {
    const { cells } = rowFor(run);
    const info = liveInfo.get(run.id);
    const active = ACTIVE.has(run.status);
    const usage = active && info?.cost ? info.cost.total?.usage || {} : run.usage || {};
    const usd = active && info?.cost ? info.cost.total?.usd : run.cost_usd;
    cells.status.replaceChildren(statusBadge(run.status));
    if (run.stop_reason && run.stop_reason !== "end_turn") cells.status.append(h("span", { class: "muted small", text: ` ${run.stop_reason}` }));
    cells.kind.textContent = run.spec?.kind ?? "";
    cells.stage.textContent = active ? info?.stage || "—" : "—";
    cells.age.textContent = fmtAge(run.created_at);
    cells.age.title = run.created_at;
    cells.tokens.textContent = fmtInt((usage.input_tokens || 0) + (usage.output_tokens || 0));
    cells.tokens.title = `${fmtInt(usage.input_tokens)} in / ${fmtInt(usage.output_tokens)} out`;
    cells.cost.textContent = fmtUsd(usd);
    cells.task.textContent = excerpt(run.spec);
  }

  async function refreshLive(run) {
    const info = liveInfo.get(run.id) || { lastEventId: -1, stage: null, cost: null };
    liveInfo.set(run.id, info);
    if (info.lastEventId === run.last_event_id) return;
    info.lastEventId = run.last_event_id;
    const id = encodeURIComponent(run.id);
    const [cost, stage] = await Promise.allSettled([
      api(`/v1/runs/${id}/cost`, { signal: ac.signal }),
      run.last_event_id > 0 ? stageOf(run, ac.signal) : Promise.resolve(null),
    ]);
    if (cost.status === "fulfilled") info.cost = cost.value;
    if (stage.status === "fulfilled" && stage.value) info.stage = stage.value;
  }

  async function load(first) {
    const page = await api(`/v1/runs${query({ status: f.status, kind: canKind() ? f.kind : "", thread_id: canThread() ? f.thread_id : "", limit: PAGE, cursor: f.cursor })}`, {
      signal: ac.signal,
    });
    const order = page.runs.map((run) => {
      update(run);
      return rowFor(run).tr;
    });
    const same = order.length === tbody.children.length && order.every((tr, i) => tbody.children[i] === tr);
    if (!same) tbody.replaceChildren(...order);
    for (const id of rows.keys()) if (!page.runs.some((r) => r.id === id)) rows.delete(id);
    empty.hidden = page.runs.length > 0;
    table.hidden = page.runs.length === 0;
    fill(
      pager,
      f.cursor ? h("a", { href: `#/runs${query({ ...f, cursor: "" })}`, text: "← First page" }) : null,
      page.next_cursor ? h("a", { href: `#/runs${query({ ...f, cursor: page.next_cursor })}`, rel: "next", text: "Next page →" }) : null,
    );
    live.textContent = `${page.runs.length} runs shown · updated ${new Date().toLocaleTimeString(undefined, { hour12: false })} · refreshes every ${REFRESH_MS / 1000} s`;
    if (first) {
      performance.mark("conclave:runs-rendered");
      main.dataset.loaded = "runs";
      window.dispatchEvent(new Event("conclave:rendered"));
      if (!caps) {
        capabilities().then((c) => {
          caps = c;
          if (!ac.signal.aborted) addFilters();
        });
      }
    }
    const active = page.runs.filter((r) => ACTIVE.has(r.status) && r.status !== "queued");
    if (active.length) {
      await Promise.all(active.map((r) => refreshLive(r).catch(() => {})));
      for (const r of active) update(r);
    }
  }

  (async () => {
    let first = true;
    while (!ac.signal.aborted) {
      if (!document.hidden || first) {
        try {
          await load(first);
          first = false;
        } catch (err) {
          if (err.name === "AbortError") return;
          live.textContent = `Could not load runs: ${err.message}`;
          if (err.status === 401) return;
        }
      }
      await sleep(REFRESH_MS, ac.signal);
    }
  })();
  return () => ac.abort();
}
