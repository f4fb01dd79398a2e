// A run's cost breakdown (`GET /v1/runs/{id}/cost`): the total, then one table per dimension.

import { fmtInt, fmtUsd, h } from "../dom.js";

const DIMENSIONS = [
  ["by_model", "By model"],
  ["by_tool", "By tool"],
  ["by_stage", "By stage"],
  ["by_agent", "By agent"],
];

function toolCalls(usage) {
  return Object.values(usage?.tool_calls || {}).reduce((a, b) => a + b, 0);
}

function row(name, line) {
  const u = line.usage || {};
  return h(
    "tr",
    {},
    h("th", { scope: "row", text: name }),
    h("td", { class: "num", text: fmtInt(u.input_tokens) }),
    h("td", { class: "num", text: fmtInt(u.output_tokens) }),
    h("td", { class: "num", text: fmtInt(u.cached_tokens) }),
    h("td", { class: "num", text: fmtInt(u.model_calls) }),
    h("td", { class: "num", text: fmtInt(toolCalls(u)) }),
    h("td", { class: "num", text: fmtUsd(line.usd) }),
    h("td", { class: "num", text: (Number(line.seconds) || 0).toFixed(1) }),
  );
}

function table(caption, lines) {
  const names = Object.keys(lines || {}).sort();
  return h(
    "table",
    { class: "cost" },
    h("caption", { text: caption }),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["Name", "Input tokens", "Output tokens", "Cached", "Model calls", "Tool calls", "USD", "Seconds"].map((t) =>
          h("th", { scope: "col", text: t }),
        ),
      ),
    ),
    h("tbody", {}, names.length ? names.map((n) => row(n, lines[n])) : h("tr", {}, h("td", { colspan: 8, class: "muted", text: "none" }))),
  );
}

export function costView(cost) {
  if (!cost) return [h("p", { class: "muted", text: "No cost yet." })];
  const total = cost.total || {};
  const u = total.usage || {};
  return [
    h(
      "p",
      { class: "total" },
      h("strong", { text: fmtUsd(total.usd) }),
      ` in total · ${fmtInt(u.input_tokens)} tokens in / ${fmtInt(u.output_tokens)} out · ${fmtInt(u.model_calls)} model calls · ${fmtInt(toolCalls(u))} tool calls`,
      cost.exhausted_limit ? h("span", { class: "warn", text: ` · exhausted: ${cost.exhausted_limit}` }) : null,
    ),
    h("div", { class: "cost-tables" }, DIMENSIONS.map(([k, caption]) => table(caption, cost[k]))),
  ];
}
