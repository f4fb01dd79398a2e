// The server's validation errors shown next to the fields they name. The API answers 422 with
// `details: [{field: "budget.usd", message, value}]`; each form control says which field it
// edits (`data-field`), and a detail goes to the control with that field or the nearest enclosing
// one ("budget.tool_calls.search" → "budget.tool_calls"). Details that name no control are listed
// in the form's summary, so nothing the server said is lost.

import { h } from "../dom.js";

function controlFor(form, field) {
  const parts = String(field).split(".");
  for (let n = parts.length; n > 0; n--) {
    const name = parts.slice(0, n).join(".");
    const el = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (el) return el;
  }
  return null;
}

function errorSlot(control) {
  const id = `${control.id}-error`;
  let slot = document.getElementById(id);
  if (!slot) {
    slot = h("p", { class: "field-error", id });
    (control.closest(".field") || control.parentElement).append(slot);
  }
  return slot;
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    const described = (el.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== `${el.id}-error`);
    if (described.length) el.setAttribute("aria-describedby", described.join(" "));
    else el.removeAttribute("aria-describedby");
  }
  for (const slot of form.querySelectorAll(".field-error")) slot.remove();
  const summary = form.querySelector(".error-summary");
  if (summary) summary.hidden = true;
}

/**
 * Show an ApiError on a form: each detail next to its control, and a summary at the top that
 * links to them; focus moves to the summary.
 */
export function showErrors(form, err) {
  clearErrors(form);
  const details = Array.isArray(err.details) && err.details.length ? err.details : [{ field: "", message: err.message }];
  const summary = form.querySelector(".error-summary");
  const items = [];
  for (const d of details) {
    const control = d.field ? controlFor(form, d.field) : null;
    const text = d.field ? `${d.field}: ${d.message}` : d.message;
    const shown = d.value !== undefined && d.value !== null ? `${text} (got ${JSON.stringify(d.value)})` : text;
    if (control) {
      control.closest("details")?.setAttribute("open", "");
      const slot = errorSlot(control);
      slot.append(h("span", { text: shown }), " ");
      control.setAttribute("aria-invalid", "true");
      const described = new Set((control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
      described.add(slot.id);
      control.setAttribute("aria-describedby", [...described].join(" "));
      items.push(h("li", {}, h("a", { href: "#", dataset: { target: control.id }, text: shown })));
    } else {
      items.push(h("li", { text: shown }));
    }
  }
  if (summary) {
    summary.replaceChildren(
      h("h2", { text: err.title || (err.status === 422 ? "The server did not accept this:" : `The server answered ${err.status || "nothing"}:`) }),
      h("ul", {}, items),
    );
    summary.hidden = false;
    summary.focus();
  }
}

/** Wire the summary's links to focus their controls without touching the page's route. */
export function errorSummary() {
  return h("div", {
    class: "error-summary",
    role: "alert",
    tabindex: "-1",
    hidden: true,
    on: {
      click(e) {
        const a = e.target.closest("a[data-target]");
        if (!a) return;
        e.preventDefault();
        document.getElementById(a.dataset.target)?.focus();
      },
    },
  });
}

/** A form value as the API should see it: a number when it reads as one, the text otherwise
 * (so the server's message names a value it cannot parse), nothing when empty. */
export function numberish(raw) {
  const s = String(raw ?? "").trim();
  if (!s) return undefined;
  return /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(s) ? Number(s) : s;
}

/** A labelled control: `<div class="field"><label/>control<p class="hint"/></div>`. */
export function field(label, control, hint) {
  const hintEl = hint ? h("p", { class: "hint", id: `${control.id}-hint`, text: hint }) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id, text: label }), control, hintEl);
}
