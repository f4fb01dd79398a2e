// A burn-down chart per budget limit of a run: used against the cap over time.
//
// The caps and the ledger's figures come from `GET /v1/runs/{id}/cost` (its `limits`, scope `run`);
// between two readings the run's own events move the lines: `model.call` (tokens, model calls),
// `tool.call` (tool calls), `budget.update` (the ledger's figures when the server sends them). A
// ledger reading always wins over what the events added up, so the line never drifts from the
// ledger. USD moves only with ledger readings (events carry no prices).

import { fmtLimit, h } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** What an event adds to each limit (the limits' labels as the ledger writes them). */
export function increments(ev) {
  const d = ev.data || {};
  if (ev.type === "model.call") {
    const u = d.usage || {};
    return {
      input_tokens: Number(u.prompt_tokens ?? u.input_tokens ?? 0),
      output_tokens: Number(u.completion_tokens ?? u.output_tokens ?? 0),
      model_calls: 1,
    };
  }
  if (ev.type === "tool.call" && d.name) return { tool_calls: 1, [`tool_calls.${d.name}`]: 1 };
  return {};
}

/** Ledger figures carried by an event (`budget.update`): `{limit: used}` for the run scope. */
export function ledgerFigures(ev) {
  if (ev.type !== "budget.update") return null;
  const d = ev.data || {};
  const out = {};
  if (Array.isArray(d.limits)) {
    for (const l of d.limits) if ((l.scope ?? "run") === "run" && l.limit) out[l.limit] = Number(l.used) || 0;
  } else if (d.used && typeof d.used === "object" && (d.scope ?? "run") === "run") {
    for (const [k, v] of Object.entries(d.used)) out[k] = Number(v) || 0;
  }
  return Object.keys(out).length ? out : null;
}

export class BurnDown {
  constructor() {
    this.caps = new Map(); // limit → cap
    this.counted = new Map(); // limit → [[t, cumulative from events]], in event order
    this.anchors = new Map(); // limit → [[t, ledger figure]], sorted by time
    this.start = null;
    this.end = null;
  }

  /** Caps and ledger figures from a cost reading taken at time `t` (seconds). */
  reading(cost, t) {
    for (const l of cost?.limits || []) {
      if (l.scope !== "run") continue;
      this.caps.set(l.limit, Number(l.cap));
      if (l.limit !== "wall_seconds") this.anchor(l.limit, t, Number(l.used));
    }
  }

  setWindow(startedAt, finishedAt) {
    if (startedAt) this.start = Date.parse(startedAt) / 1000;
    this.end = finishedAt ? Date.parse(finishedAt) / 1000 : null;
  }

  event(ev) {
    const ledger = ledgerFigures(ev);
    if (ledger) {
      for (const [k, v] of Object.entries(ledger)) this.anchor(k, ev.ts, v);
      return;
    }
    for (const [k, v] of Object.entries(increments(ev))) {
      if (!this.counted.has(k)) this.counted.set(k, []);
      const s = this.counted.get(k);
      const last = s.length ? s[s.length - 1] : [ev.ts, 0];
      s.push([Math.max(ev.ts, last[0]), last[1] + v]); // events come in id order; keep time monotonic
    }
  }

  anchor(limit, t, used) {
    if (!this.anchors.has(limit)) this.anchors.set(limit, []);
    const a = this.anchors.get(limit);
    if (a.length && a[a.length - 1][0] === t && a[a.length - 1][1] === used) return;
    a.push([t, used]);
    a.sort((x, y) => x[0] - y[0]);
  }

  /** Used over time: the events' count, shifted at each ledger reading to agree with the ledger. */
  series(limit) {
    const counted = this.counted.get(limit) || [];
    const anchors = this.anchors.get(limit) || [];
    const countAt = (t) => {
      let lo = 0;
      let hi = counted.length; // first index with time > t
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (counted[mid][0] <= t) lo = mid + 1;
        else hi = mid;
      }
      return lo ? counted[lo - 1][1] : 0;
    };
    const times = [...new Set([...counted.map((p) => p[0]), ...anchors.map((p) => p[0])])].sort((a, b) => a - b);
    const out = [];
    let shift = 0;
    let ai = 0;
    for (const t of times) {
      while (ai < anchors.length && anchors[ai][0] <= t) {
        shift = anchors[ai][1] - countAt(anchors[ai][0]);
        ai++;
      }
      out.push([t, Math.max(0, countAt(t) + shift)]);
    }
    return out;
  }

  /** One figure per capped limit. `now` (seconds) is the right edge while the run goes on. */
  render(now) {
    const limits = [...this.caps.keys()].sort();
    if (!limits.length) return [h("p", { class: "muted", text: "This run has no budget limits." })];
    return limits.map((limit) => this.chart(limit, now));
  }

  chart(limit, now) {
    const cap = this.caps.get(limit);
    const t0 = this.start ?? now;
    const t1 = Math.max(this.end ?? now, t0 + 1);
    let pts = [[t0, 0], ...this.series(limit)];
    if (limit === "wall_seconds") pts = [[t0, 0], [t1, t1 - t0]];
    const used = pts.length ? pts[pts.length - 1][1] : 0;
    const W = 320;
    const H = 120;
    const pad = { l: 8, r: 8, t: 10, b: 18 };
    const top = Math.max(cap, used, 1e-12) * 1.08;
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
    const y = (v) => H - pad.b - (v / top) * (H - pad.t - pad.b);
    let d = "";
    let prev = null;
    for (const [t, v] of pts) {
      const px = x(Math.min(Math.max(t, t0), t1)).toFixed(1);
      d += prev === null ? `M${px},${y(v).toFixed(1)}` : `H${px}V${y(v).toFixed(1)}`;
      prev = v;
    }
    if (prev !== null) d += `H${x(t1).toFixed(1)}`;
    const pct = cap > 0 ? Math.min(999, (used / cap) * 100) : 0;
    const label = `${limit}: ${fmtLimit(limit, used)} used of ${fmtLimit(limit, cap)} (${pct.toFixed(0)} %)`;
    const area = d ? d + `V${y(0).toFixed(1)}H${x(pts[0][0]).toFixed(1)}Z` : "";
    const fig = svg(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, class: "burndown", role: "img", "aria-label": label },
      svg("line", { x1: pad.l, x2: W - pad.r, y1: y(0), y2: y(0), class: "axis" }),
      svg("line", { x1: pad.l, x2: W - pad.r, y1: y(cap), y2: y(cap), class: "cap" }),
      svg("text", { x: W - pad.r, y: y(cap) - 3, "text-anchor": "end", class: "cap-label" }, `cap ${fmtLimit(limit, cap)}`),
      ...(area ? [svg("path", { d: area, class: "used-area" }), svg("path", { d, class: "used-line" })] : []),
      svg("text", { x: pad.l, y: H - 4, class: "tick" }, "start"),
      svg("text", { x: W - pad.r, y: H - 4, "text-anchor": "end", class: "tick" }, this.end ? "end" : "now"),
    );
    return h(
      "figure",
      { class: `budget${used >= cap ? " exhausted" : ""}`, dataset: { limit } },
      fig,
      h("figcaption", {}, h("strong", { text: limit }), ` ${fmtLimit(limit, used)} of ${fmtLimit(limit, cap)} used (${pct.toFixed(0)} %)`),
    );
  }
}
