// Sign in with an API key. The key is checked against the API (one listing call) before it is
// kept, and it is kept in this tab's sessionStorage only.

import { api, auth } from "../api.js";
import { h } from "../dom.js";

export async function render(main, params) {
  const next = params.get("next") || "#/runs";
  const key = h("input", { id: "f-key", type: "password", autocomplete: "off", spellcheck: "false", required: true, "aria-describedby": "f-key-hint" });
  const error = h("p", { class: "error", id: "signin-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const form = h(
    "form",
    { class: "signin", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "f-key", text: "API key" }), key, h("p", { class: "hint", id: "f-key-hint", text: "Kept in this browser tab only, and forgotten when the tab closes." })),
    h("div", { class: "buttons" }, button),
    error,
  );
  main.replaceChildren(
    h("h1", { tabindex: "-1", text: "Sign in" }),
    h("p", { text: params.get("reason") || "This server asks for an API key (auth is on)." }),
    form,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const secret = key.value.trim();
    if (!secret) {
      error.textContent = "Enter an API key.";
      key.setAttribute("aria-invalid", "true");
      key.focus();
      return;
    }
    button.disabled = true;
    try {
      await api("/v1/runs?limit=1", { key: secret });
      auth.set(secret);
      key.removeAttribute("aria-invalid");
      window.dispatchEvent(new CustomEvent("conclave:signed-in"));
      location.hash = next.startsWith("#/signin") ? "#/runs" : next;
    } catch (err) {
      error.textContent = err.status === 401 ? `Not signed in: ${err.message}` : `Could not check the key: ${err.message}`;
      key.setAttribute("aria-invalid", "true");
      key.focus();
    } finally {
      button.disabled = false;
    }
  });
  key.focus();
  return () => {};
}
