// One pending tool call waiting for a person: the call, its arguments (editable), the budget it
// would reserve, and approve / deny. `POST /v1/runs/{id}/approvals` decides it; a call someone
// else decided first answers 409, and the card says so.

import { api } from "../api.js";
import { announce, fmtAge, fmtLimit, h, prettyJson, statusBadge } from "../dom.js";
import { clearErrors, errorSummary, field, showErrors } from "./forms.js";

let seq = 0;

export function approvalCard(a, { onDecided = () => {}, showRun = true } = {}) {
  const n = ++seq;
  const original = prettyJson(a.arguments ?? {});
  const args = h("textarea", { id: `ap${n}-args`, rows: 6, class: "mono", dataset: { field: "arguments" }, spellcheck: "false" });
  args.value = original;
  const reason = h("input", { id: `ap${n}-reason`, type: "text", dataset: { field: "reason" }, autocomplete: "off" });
  const status = h("p", { class: "decision", "aria-live": "polite" });
  const pending = a.status === "pending";
  const form = h("form", { class: "approval-form", novalidate: true }, errorSummary());
  const reserve = Object.entries(a.reserve || {});

  async function decide(decision) {
    clearErrors(form);
    const body = { approval_id: a.id, decision, reason: reason.value.trim() || null, arguments: null };
    if (decision === "edit") {
      try {
        body.arguments = JSON.parse(args.value);
      } catch (e) {
        showErrors(form, { status: 0, title: "This cannot be sent yet:", message: e.message, details: [{ field: "arguments", message: `not valid JSON: ${e.message}` }] });
        return;
      }
    }
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    try {
      const res = await api(`/v1/runs/${encodeURIComponent(a.run_id)}/approvals`, { method: "POST", body });
      const verb = { approved: "approved", denied: "denied", edited: "approved with edits" }[res.approval?.status] || res.approval?.status;
      status.textContent = `Decided: ${verb}. The run is ${res.run?.status}.`;
      announce(status.textContent);
      form.hidden = true;
      onDecided(res);
    } catch (err) {
      for (const b of form.querySelectorAll("button")) b.disabled = false;
      if (err.status === 409) {
        status.textContent = `Not decided: ${err.message}`;
        form.hidden = true;
        onDecided(null);
      } else showErrors(form, err);
    }
  }

  form.append(
    field("Arguments (JSON)", args, "Change them and choose “Approve with edits” to run the call with new arguments."),
    field("Reason", reason, "Told to the model when you deny the call."),
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", class: "primary", text: "Approve", on: { click: () => decide(args.value.trim() === original.trim() ? "approve" : "edit") } }),
      h("button", { type: "button", text: "Approve with edits", on: { click: () => decide("edit") } }),
      h("button", { type: "button", class: "danger", text: "Deny", on: { click: () => decide("deny") } }),
    ),
  );
  if (!pending) form.hidden = true;
  return h(
    "article",
    { class: "approval card", dataset: { approvalId: a.id, runId: a.run_id }, "aria-labelledby": `ap${n}-title` },
    h("h3", { id: `ap${n}-title` }, "Tool call ", h("code", { text: a.tool }), " ", statusBadge(a.status)),
    h(
      "dl",
      { class: "facts" },
      showRun ? [h("dt", { text: "Run" }), h("dd", {}, h("a", { href: `#/runs/${encodeURIComponent(a.run_id)}`, text: a.run_id }))] : null,
      h("dt", { text: "Step" }),
      h("dd", {}, h("code", { text: a.step_key ?? "" })),
      h("dt", { text: "Requested" }),
      h("dd", { text: a.requested_at ? `${fmtAge(a.requested_at)} ago` : "" }),
      h("dt", { text: "Would reserve" }),
      h("dd", { text: reserve.length ? reserve.map(([k, v]) => `${k} ${fmtLimit(k, v)}`).join(", ") : "nothing" }),
      a.reason ? [h("dt", { text: "Reason" }), h("dd", { text: a.reason })] : null,
    ),
    form,
    status,
  );
}
