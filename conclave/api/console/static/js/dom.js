// Small DOM helpers. Everything the console shows is built with these, from text nodes, so text
// that models wrote can never become markup by accident (Markdown goes through markdown.js and
// its sanitiser instead).

/**
 * Create an element. `attrs` keys: `class`, `text`, `on` ({event: handler}), `dataset`, any
 * attribute (booleans add or omit it). Children: nodes, strings (as text), arrays, or null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = String(v);
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Say something to screen-reader users (the page's polite live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = message;
}

const INT = new Intl.NumberFormat("en-US");

export function fmtInt(n) {
  return INT.format(Math.round(Number(n) || 0));
}

export function fmtUsd(n) {
  const v = Number(n) || 0;
  if (v === 0) return "$0";
  if (v < 0.01) return "$" + v.toPrecision(2);
  return "$" + v.toFixed(v < 1 ? 4 : 2);
}

/** A number as a limit shows it: USD with a dollar sign, seconds with "s", counts as integers. */
export function fmtLimit(limit, value) {
  if (limit === "usd") return fmtUsd(value);
  if (limit === "wall_seconds") return `${(Number(value) || 0).toFixed(1)} s`;
  return fmtInt(value);
}

export function fmtSeconds(s) {
  const v = Math.max(0, Number(s) || 0);
  if (v < 60) return `${v < 10 ? v.toFixed(1) : Math.round(v)} s`;
  if (v < 3600) return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
  if (v < 86400) return `${Math.floor(v / 3600)} h ${Math.round((v % 3600) / 60)} min`;
  return `${Math.floor(v / 86400)} d ${Math.round((v % 86400) / 3600)} h`;
}

/** "12 s", "5 min", "3 h", "2 d" since an ISO time (or Unix seconds). */
export function fmtAge(iso, now = Date.now()) {
  if (!iso) return "";
  const ms = typeof iso === "number" ? iso * 1000 : Date.parse(iso);
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

export function fmtTime(isoOrEpoch) {
  if (isoOrEpoch === null || isoOrEpoch === undefined || isoOrEpoch === "") return "";
  const d = typeof isoOrEpoch === "number" ? new Date(isoOrEpoch * 1000) : new Date(isoOrEpoch);
  return d.toLocaleString(undefined, { hour12: false });
}

/** A status as a badge; the text says the status, colour only repeats it. */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, text: String(status).replace("_", " ") });
}

/** Long text folded behind a summary; short text shown as it is. */
export function folded(text, { limit = 400, lines = 8, cls = "" } = {}) {
  const s = String(text ?? "");
  const lineCount = s.replace(/\n$/, "").split("\n").length;
  if (s.length <= limit && lineCount <= lines) return h("pre", { class: `text ${cls}` }, s);
  const flat = s.replace(/\s+/g, " ").trim();
  const first = flat.length > 100 ? flat.slice(0, 100) : flat;
  return h(
    "details",
    { class: `fold ${cls}` },
    h("summary", {}, first, h("span", { class: "muted", text: ` … (${fmtInt(s.length)} characters, ${lineCount} lines)` })),
    h("pre", { class: "text" }, s),
  );
}

/** JSON shown readably: pretty when it parses, as given when it does not. */
export function prettyJson(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
