// A run's events as a person reads them: stages, agent turns with their tool calls and results
// (long results folded), lifecycle lines. Each event becomes one list item keyed by its id, so an
// event that somehow arrived twice would replace its item, never add a second one.

import { folded, fmtInt, fmtTime, h, prettyJson } from "../dom.js";

function who(d) {
  const parts = [d.agent, d.stage && d.stage !== d.agent ? d.stage : null].filter(Boolean);
  return parts.length ? h("span", { class: "who", text: parts.join(" · ") }) : null;
}

function toolArgs(args) {
  return folded(prettyJson(args ?? ""), { limit: 300, lines: 6, cls: "args" });
}

/** The body of one event's list item. */
export function describe(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case "stage.started":
      return [h("strong", { text: `Stage ${d.stage} started` })];
    case "stage.finished":
      return [
        h("strong", { text: `Stage ${d.stage} finished` }),
        h("span", {
          class: "muted",
          text: ` ${Object.entries(d)
            .filter(([k, v]) => k !== "stage" && k !== "budget" && typeof v !== "object")
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}`,
        }),
      ];
    case "model.call": {
      const u = d.usage || {};
      return [
        h("span", { class: "kind", text: "model call" }),
        " ",
        who(d),
        ` ${d.model ?? ""} · ${fmtInt(u.prompt_tokens ?? u.input_tokens)} in / ${fmtInt(u.completion_tokens ?? u.output_tokens)} out`,
        d.finish_reason ? h("span", { class: "muted", text: ` · ${d.finish_reason}` }) : null,
        d.turn !== undefined ? h("span", { class: "muted", text: ` · turn ${d.turn}` }) : null,
      ];
    }
    case "agent.message":
      return [
        h("span", { class: "kind", text: `turn ${d.turn ?? ""}` }),
        " ",
        who(d),
        d.content ? folded(d.content, { limit: 600, lines: 10, cls: "message" }) : null,
        (d.tool_calls || []).length
          ? h(
              "ul",
              { class: "calls" },
              d.tool_calls.map((c) => h("li", {}, h("code", { text: c.name }), toolArgs(c.arguments))),
            )
          : null,
      ];
    case "tool.call":
      return [h("span", { class: "kind", text: "tool call" }), " ", who(d), " ", h("code", { text: d.name }), toolArgs(d.arguments)];
    case "tool.result":
      return [
        h("span", { class: `kind${d.is_error ? " error" : ""}`, text: d.is_error ? "tool error" : "tool result" }),
        " ",
        who(d),
        " ",
        h("code", { text: d.name }),
        folded(d.content ?? "", { limit: 300, lines: 6, cls: "result" }),
      ];
    case "agent.stopped":
      return [h("span", { class: "kind", text: "agent stopped" }), " ", who(d), ` ${d.status ?? ""} (${d.stop_reason ?? ""})`, d.detail ? ` — ${d.detail}` : ""];
    case "run.finished":
      return [h("strong", { text: `Run finished: ${d.status ?? ""}` }), d.stop_reason ? ` (${d.stop_reason})` : "", d.error ? ` — ${d.error}` : ""];
    default: {
      const text = Object.keys(d).length ? JSON.stringify(d) : "";
      return [h("span", { class: "kind", text: ev.type }), text ? folded(text, { limit: 200, lines: 3, cls: "data" }) : null];
    }
  }
}

export function eventItem(ev) {
  return h(
    "li",
    { class: `ev ev-${ev.type.replace(/\./g, "-")}`, dataset: { eventId: ev.id, type: ev.type }, id: `ev-${ev.id}` },
    h("span", { class: "ev-id", text: `#${ev.id}` }),
    h("time", { class: "ev-time", datetime: new Date(ev.ts * 1000).toISOString(), text: fmtTime(ev.ts).split(" ").pop() }),
    h("div", { class: "ev-body" }, describe(ev)),
  );
}

/** Stages as they start and finish: name, state, duration. */
export class Stages {
  constructor() {
    this.stages = new Map();
  }

  event(ev) {
    const d = ev.data || {};
    if (ev.type === "stage.started") this.stages.set(d.stage, { name: d.stage, start: ev.ts, end: null });
    else if (ev.type === "stage.finished") {
      const s = this.stages.get(d.stage) || { name: d.stage, start: ev.ts };
      s.end = ev.ts;
      this.stages.set(d.stage, s);
    } else return false;
    return true;
  }

  get current() {
    let cur = null;
    for (const s of this.stages.values()) if (s.end === null) cur = s.name;
    return cur;
  }

  render(now) {
    if (!this.stages.size) return [h("p", { class: "muted", text: "No stages (this kind runs as one)." })];
    return [
      h(
        "ol",
        { class: "stages" },
        [...this.stages.values()].map((s) =>
          h(
            "li",
            { class: s.end === null ? "running" : "done", dataset: { stage: s.name } },
            h("strong", { text: s.name }),
            ` ${s.end === null ? "running" : "done"} · ${((s.end ?? now) - s.start).toFixed(1)} s`,
          ),
        ),
      ),
    ];
  }
}
