// The console's entry: a hash router over the pages, the sign-in gate, and the header.
// Routes: #/runs, #/runs/<id>, #/runs/<id>/workspace, #/approvals, #/submit, #/signin.

import { api, auth, capabilities } from "./api.js";
import { h } from "./dom.js";
import * as approvals from "./pages/approvals.js";
import * as run from "./pages/run.js";
import * as runs from "./pages/runs.js";
import * as signin from "./pages/signin.js";
import * as submit from "./pages/submit.js";
import * as workspace from "./pages/workspace.js";

const ROUTES = [
  [/^\/runs\/([^/]+)\/workspace$/, ["id"], workspace, "Workspace"],
  [/^\/runs\/([^/]+)$/, ["id"], run, "Run"],
  [/^\/runs$/, [], runs, "Runs"],
  [/^\/approvals$/, [], approvals, "Approvals"],
  [/^\/submit$/, [], submit, "New run"],
  [/^\/signin$/, [], signin, "Sign in"],
];

const main = document.getElementById("main");
let cleanup = null;
let current = null;
let authOn = false;

function parse(hash) {
  const raw = hash.replace(/^#/, "") || "/runs";
  const [path, q = ""] = raw.split("?", 2);
  return { path, params: new URLSearchParams(q) };
}

function signinRoute(reason) {
  const next = location.hash.startsWith("#/signin") ? "#/runs" : location.hash || "#/runs";
  const q = new URLSearchParams({ next });
  if (reason) q.set("reason", reason);
  return `#/signin?${q}`;
}

function header() {
  const who = document.getElementById("who");
  who.replaceChildren(
    auth.get()
      ? h(
          "button",
          {
            type: "button",
            class: "link",
            text: "Sign out",
            on: {
              click() {
                auth.clear();
                location.hash = "#/signin";
                header();
              },
            },
          },
        )
      : authOn
        ? h("a", { href: "#/signin", text: "Sign in" })
        : h("span", { class: "muted small", text: "auth off" }),
  );
  const { path } = parse(location.hash);
  for (const a of document.querySelectorAll("nav.main a")) {
    const here = path === a.getAttribute("href").slice(1) || (a.getAttribute("href") === "#/runs" && path.startsWith("/runs"));
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function navigate() {
  if (!location.hash.startsWith("#/")) {
    if (!location.hash) location.replace("#/runs");
    return;
  }
  const { path, params } = parse(location.hash);
  const previous = current;
  current = { path, params };
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // a page's cleanup must not stop the next page
    }
    cleanup = null;
  }
  header();
  const route = ROUTES.find(([re]) => re.test(path));
  if (!route) {
    main.replaceChildren(h("h1", { tabindex: "-1", text: "Not found" }), h("p", {}, "No page here. ", h("a", { href: "#/runs", text: "See the runs" }), "."));
    main.querySelector("h1").focus();
    return;
  }
  if (authOn && !auth.get() && route[2] !== signin) {
    location.replace(signinRoute());
    return;
  }
  const [re, names, page, title] = route;
  const m = path.match(re);
  names.forEach((n, i) => params.set(n, decodeURIComponent(m[i + 1])));
  document.title = `${title} · Conclave`;
  const samePage = previous && previous.path === path;
  const ctx = { focusSource: samePage && params.get("source") && params.get("source") !== previous.params.get("source") };
  main.setAttribute("aria-busy", "true");
  try {
    const done = await page.render(main, params, ctx);
    if (current.path === path && current.params === params) cleanup = done;
    else done?.();
  } catch (err) {
    if (err.name === "AbortError") return;
    main.replaceChildren(
      h("h1", { tabindex: "-1", text: "Something went wrong" }),
      h("p", { class: "error", role: "alert", text: err.message || String(err) }),
    );
  } finally {
    main.removeAttribute("aria-busy");
  }
  // After a move inside the console the new page's heading takes focus (a screen reader starts
  // there); on the first load focus stays at the top, where the skip link is.
  if (previous && !samePage && route[2] !== signin) main.querySelector("h1")?.focus();
}

async function boot() {
  document.querySelector(".skip")?.addEventListener("click", (e) => {
    e.preventDefault();
    main.focus();
  });
  window.addEventListener("conclave:unauthorized", (e) => {
    authOn = true;
    auth.clear();
    if (!location.hash.startsWith("#/signin")) location.hash = signinRoute(e.detail?.message);
  });
  window.addEventListener("conclave:signed-in", header);
  // Is auth on? One listing call without a key answers 401 when it is.
  try {
    await api("/v1/runs?limit=1", { key: auth.get() || "" });
  } catch (err) {
    if (err.status === 401) {
      authOn = true;
      if (auth.get()) {
        auth.clear();
        if (!location.hash.startsWith("#/signin")) location.replace(signinRoute(`Your key was refused: ${err.message}`));
      }
    }
  }
  window.addEventListener("hashchange", navigate);
  await navigate();
  document.body.dataset.ready = "1";
  // What this server offers (its OpenAPI document) is read after the first page: building that
  // document is the slowest answer of a freshly started server, and the runs list does not need it.
  const later = () =>
    capabilities().then((caps) => {
      document.getElementById("nav-approvals").hidden = !caps.has("GET", "/v1/approvals");
    });
  if (main.dataset.loaded) later();
  else {
    window.addEventListener("conclave:rendered", later, { once: true });
    setTimeout(later, 2000);
  }
}

boot();
