// Runs waiting for a person: every pending tool call of the tenant (`GET /v1/approvals`), each
// with its arguments (editable) and approve / deny. New requests appear as they come; a card being
// edited is never replaced under the person's hands, and a card decided here stays (with its
// decision) so the person sees what they did; cards decided elsewhere go.

import { api, capabilities } from "../api.js";
import { h, sleep } from "../dom.js";
import { approvalCard } from "../parts/approval.js";

const REFRESH_MS = 3000;

export async function render(main) {
  const caps = await capabilities();
  const ac = new AbortController();
  const list = h("div", { class: "approvals", id: "approvals" });
  const state = h("p", { class: "muted", "aria-live": "polite" });
  main.replaceChildren(h("h1", { tabindex: "-1", text: "Approvals" }), state, list);
  if (!caps.has("GET", "/v1/approvals")) {
    state.textContent = "This server does not ask for approvals yet (it has no approvals API).";
    return () => {};
  }
  const cards = new Map();
  const decidedHere = new Set();

  async function load() {
    const res = await api("/v1/approvals?status=pending", { signal: ac.signal });
    const pending = (res.approvals || []).filter((a) => a.status === "pending");
    const ids = new Set(pending.map((a) => a.id));
    for (const [id, card] of cards) {
      if (!ids.has(id) && !decidedHere.has(id) && !card.contains(document.activeElement)) {
        card.remove();
        cards.delete(id);
      }
    }
    for (const a of pending) {
      if (cards.has(a.id)) continue;
      const card = approvalCard(a, { onDecided: () => decidedHere.add(a.id) });
      cards.set(a.id, card);
      list.append(card);
    }
    state.textContent = pending.length ? `${pending.length} tool calls wait for a decision.` : "Nothing waits for you.";
  }

  (async () => {
    while (!ac.signal.aborted) {
      try {
        await load();
      } catch (err) {
        if (err.name === "AbortError") return;
        if (err.routeMissing) {
          state.textContent = "This server does not ask for approvals yet (it has no approvals API).";
          return;
        }
        state.textContent = `Could not load the approvals: ${err.message}`;
      }
      await sleep(REFRESH_MS, ac.signal);
    }
  })();
  return () => ac.abort();
}
