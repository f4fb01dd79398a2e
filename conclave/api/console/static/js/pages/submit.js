// Submit a research or agent task (`POST /v1/runs`). The form checks nothing itself: the server
// validates, and its 422 details are shown next to the fields they name.

import { api, capabilities } from "../api.js";
import { h } from "../dom.js";
import { clearErrors, errorSummary, field, numberish, showErrors } from "../parts/forms.js";

const BUDGET = [
  ["usd", "USD", "Cost cap in US dollars."],
  ["input_tokens", "Input tokens", ""],
  ["output_tokens", "Output tokens", ""],
  ["model_calls", "Model calls", ""],
  ["wall_seconds", "Wall seconds", "Seconds of running."],
];

function input(id, fieldName, attrs = {}) {
  return h("input", { id, name: id, type: "text", autocomplete: "off", dataset: { field: fieldName }, ...attrs });
}

/** "search=4, python=2" → {search: 4, python: 2}; a value that is not a number goes as typed. */
function toolCalls(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, value, extra] = part.split("=").map((s) => s.trim());
    if (!name || value === undefined || extra !== undefined) throw Object.assign(new Error(`expected name=count pairs, got ${JSON.stringify(part)}`), { field: "budget.tool_calls" });
    out[name] = numberish(value);
  }
  return out;
}

export async function render(main) {
  const caps = await capabilities();
  let models = null;
  if (caps.has("GET", "/v1/models")) {
    try {
      models = (await api("/v1/models")).data?.map((m) => m.id) ?? null;
    } catch {
      models = null;
    }
  }
  let idempotencyKey = crypto.randomUUID();

  const kindResearch = h("input", { type: "radio", name: "kind", id: "f-kind-research", value: "research", checked: true });
  const kindAgent = h("input", { type: "radio", name: "kind", id: "f-kind-agent", value: "agent" });
  const kind = h(
    "fieldset",
    { id: "f-kind", class: "kind", dataset: { field: "kind" }, tabindex: "-1" },
    h("legend", { text: "Kind of run" }),
    h("div", { class: "choice" }, kindResearch, h("label", { for: "f-kind-research", text: "Research: a cited report from a corpus" })),
    h("div", { class: "choice" }, kindAgent, h("label", { for: "f-kind-agent", text: "Agent task: a tool-calling agent with a workspace" })),
  );
  const task = h("textarea", { id: "f-input", name: "input", rows: 4, dataset: { field: "input" }, required: true });
  const model = models
    ? h("select", { id: "f-model", dataset: { field: "model" } }, h("option", { value: "", text: "the default model" }), models.map((m) => h("option", { value: m, text: m })))
    : input("f-model", "model", { placeholder: "the default model" });
  const corpus = input("f-corpus", "options.corpus", { list: "f-corpora", placeholder: "python-docs" });
  const rounds = input("f-rounds", "options.rounds", { inputmode: "numeric", size: 4 });
  const tools = input("f-tools", "tools", { placeholder: "fs, search" });
  const maxSteps = input("f-max-steps", "max_steps", { inputmode: "numeric", size: 6 });
  const budget = Object.fromEntries(BUDGET.map(([k]) => [k, input(`f-budget-${k.replace("_", "-")}`, `budget.${k}`, { inputmode: "decimal", size: 10 })]));
  const budgetTools = input("f-budget-tool-calls", "budget.tool_calls", { placeholder: "search=4, python=2" });
  const options = h("textarea", { id: "f-options", rows: 5, class: "mono", dataset: { field: "options" }, spellcheck: "false", placeholder: '{"key_questions": 2, "max_sections": 2}' });
  const submit = h("button", { type: "submit", class: "primary", text: "Submit" });
  const result = h("p", { role: "status", class: "result" });

  const researchOnly = h("div", { class: "research-only" }, field("Corpus", corpus, "A named local corpus to search."), field("Rounds", rounds, "Context-builder rounds."));
  const agentOnly = h("div", { class: "agent-only", hidden: true }, field("Max steps", maxSteps, "Model turns at most."));
  const form = h(
    "form",
    { class: "submit", novalidate: true, "aria-labelledby": "submit-h" },
    errorSummary(),
    kind,
    field("Question or task", task),
    field("Model", model),
    researchOnly,
    agentOnly,
    field("Tools", tools, "Tool names or groups, separated by commas (for example fs, search, python, mcp:<server>)."),
    h(
      "fieldset",
      { class: "budget", id: "f-budget", dataset: { field: "budget" }, tabindex: "-1" },
      h("legend", { text: "Budget (any limit may stay empty)" }),
      h("div", { class: "grid" }, BUDGET.map(([k, label, hint]) => field(label, budget[k], hint || undefined)), field("Tool calls", budgetTools, "Calls per tool: name=count, '*' for all tools.")),
    ),
    h("details", { class: "advanced" }, h("summary", { text: "More options (JSON)" }), field("Options", options, "Other options of the kind, as a JSON object.")),
    h("div", { class: "buttons" }, submit),
    result,
  );
  main.replaceChildren(h("h1", { id: "submit-h", tabindex: "-1", text: "New run" }), form, h("datalist", { id: "f-corpora" }, h("option", { value: "python-docs" })));

  const kindValue = () => (kindAgent.checked ? "agent" : "research");
  for (const r of [kindResearch, kindAgent]) {
    r.addEventListener("change", () => {
      researchOnly.hidden = kindValue() !== "research";
      agentOnly.hidden = kindValue() !== "agent";
    });
  }
  form.addEventListener("input", () => {
    idempotencyKey = crypto.randomUUID(); // a changed form is a new task; a double click is not
  });

  function spec() {
    const k = kindValue();
    const s = { kind: k, input: task.value };
    if (model.value.trim()) s.model = model.value.trim();
    const t = tools.value.split(",").map((x) => x.trim()).filter(Boolean);
    if (t.length) s.tools = t;
    let opts = {};
    if (options.value.trim()) {
      try {
        opts = JSON.parse(options.value);
      } catch (e) {
        throw Object.assign(new Error(`not valid JSON: ${e.message}`), { field: "options" });
      }
    }
    if (k === "research") {
      if (corpus.value.trim()) opts.corpus = corpus.value.trim();
      const r = numberish(rounds.value);
      if (r !== undefined) opts.rounds = r;
    } else {
      const m = numberish(maxSteps.value);
      if (m !== undefined) s.max_steps = m;
    }
    if (opts && (typeof opts !== "object" || Array.isArray(opts) || Object.keys(opts).length)) s.options = opts;
    const b = {};
    for (const [key] of BUDGET) {
      const v = numberish(budget[key].value);
      if (v !== undefined) b[key] = v;
    }
    if (budgetTools.value.trim()) b.tool_calls = toolCalls(budgetTools.value);
    if (Object.keys(b).length) s.budget = b;
    return s;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    result.textContent = "";
    let body;
    try {
      body = spec();
    } catch (err) {
      showErrors(form, { status: 0, title: "This cannot be sent yet:", message: err.message, details: [{ field: err.field, message: err.message }] });
      return;
    }
    submit.disabled = true;
    result.textContent = "Submitting…";
    try {
      const run = await api("/v1/runs", { method: "POST", body, headers: { "Idempotency-Key": idempotencyKey } });
      result.textContent = `Submitted ${run.id}.`;
      location.hash = `#/runs/${encodeURIComponent(run.id)}`;
    } catch (err) {
      result.textContent = "";
      if (err.status !== 401) showErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  return () => {};
}
