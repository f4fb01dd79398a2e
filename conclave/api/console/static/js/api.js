// The console's only way to the server: the public HTTP API, with the API key (when auth is on)
// sent as `Authorization: Bearer`. The key lives in sessionStorage only: it is gone when the tab
// closes and is never written anywhere else.

const KEY_NAME = "conclave.apiKey";

/** Where the API is: the origin, plus any path prefix in front of the console's `/ui/`. */
export const BASE = location.pathname.replace(/\/ui(\/.*)?$/, "");

export const auth = {
  get() {
    return sessionStorage.getItem(KEY_NAME);
  },
  set(key) {
    sessionStorage.setItem(KEY_NAME, key);
  },
  clear() {
    sessionStorage.removeItem(KEY_NAME);
  },
};

/** An answer of the API that is not a success, with its error body (`{error: {code, message, details}}`). */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The route itself is not there (an older server), as opposed to a missing run. */
  get routeMissing() {
    return this.status === 405 || (this.status === 404 && (this.code === "not_found" || this.code === "method_not_allowed"));
  }
}

export function authHeaders(key = auth.get()) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: a proxy's page, an empty body
  }
  const e = body?.error;
  if (e && typeof e === "object") return new ApiError(res.status, e.code || "error", e.message || res.statusText, e.details || null);
  const detail = typeof body?.detail === "string" ? body.detail : res.statusText || `HTTP ${res.status}`;
  return new ApiError(res.status, `http_${res.status}`, detail);
}

/**
 * Call the API. Returns the parsed JSON (or the Response itself with `raw: true`); throws
 * `ApiError` for a non-2xx answer. A 401 also tells the page (event `conclave:unauthorized`) so
 * that it can ask for a key.
 */
export async function api(path, { method = "GET", body, headers = {}, signal, raw = false, key } = {}) {
  const init = { method, signal, headers: { Accept: "application/json", ...authHeaders(key), ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", `cannot reach the server (${err.message})`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && key === undefined) window.dispatchEvent(new CustomEvent("conclave:unauthorized", { detail: err }));
    throw err;
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The run statuses every server knows; the OpenAPI document may name more. */
export const DEFAULT_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "budget_exhausted"];

/**
 * What this server offers, read from its OpenAPI document: routes (so controls for routes it does
 * not have yet stay hidden), query parameters, and the run statuses it knows. When the document
 * cannot be read, every route counts as present and a click on a missing one says so.
 */
class Capabilities {
  constructor(doc) {
    this.known = !!doc;
    this.routes = new Map();
    this.statuses = DEFAULT_STATUSES;
    if (!doc) return;
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const [method, op] of Object.entries(item)) {
        const params = new Set((op.parameters || []).map((p) => p.name));
        this.routes.set(`${method.toUpperCase()} ${path}`, params);
      }
    }
    const enumOf = doc.components?.schemas?.RunStatus?.enum;
    if (Array.isArray(enumOf) && enumOf.length) this.statuses = enumOf;
  }

  has(method, path) {
    return !this.known || this.routes.has(`${method} ${path}`);
  }

  hasParam(method, path, name) {
    if (!this.known) return false; // a filter the server may silently ignore would show wrong rows
    return this.routes.get(`${method} ${path}`)?.has(name) ?? false;
  }
}

let capsPromise = null;

export function capabilities() {
  if (!capsPromise) {
    capsPromise = api("/openapi.json")
      .then((doc) => new Capabilities(doc))
      .catch(() => new Capabilities(null));
  }
  return capsPromise;
}

/** Save a Response body as a file (a download that carries the Authorization header). */
export async function download(path, filename) {
  const res = await api(path, { raw: true, headers: { Accept: "*/*" } });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
