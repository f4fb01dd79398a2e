// A run's event stream over `fetch`, because `EventSource` cannot send an Authorization header.
// The parser follows the HTML standard's event-stream rules (lines end in CR, LF or CRLF, even
// split across chunks; `data` lines join with newlines; comments are ignored), and the follower
// reconnects with `Last-Event-ID` and drops any event it has already passed on, so a page shows
// each event exactly once however often the connection breaks.

import { ApiError, authHeaders, BASE } from "./api.js";
import { sleep } from "./dom.js";

/** Incremental text/event-stream parser: `feed(chunk)` calls `onMessage({type, data, id, retry})`. */
export class SseParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.skipLF = false; // the last chunk ended in CR: a LF starting the next one belongs to it
    this.started = false;
    this.reset();
    this.lastEventId = "";
  }

  reset() {
    this.data = [];
    this.type = "";
  }

  feed(chunk) {
    let text = chunk;
    if (!this.started && text.length) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    let s = this.buffer + text;
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c !== "\n" && c !== "\r") continue;
      this.line(s.slice(start, i));
      if (c === "\r") {
        if (i + 1 < s.length) {
          if (s[i + 1] === "\n") i++;
        } else {
          this.skipLF = true;
        }
      }
      start = i + 1;
    }
    this.buffer = s.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onMessage({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onMessage({ type: "__retry", retry: Number(value) });
  }
}

/**
 * Follow `/v1/runs/{id}/events` until `run.finished` (or `signal` aborts). Each event is passed to
 * `onEvent(event)` once, in id order. `after` resumes after that id. `onState(state, detail)` hears
 * `open`, `reconnecting` and `finished`. When a connection ends cleanly before `run.finished`,
 * `ended()` (if given) decides whether there is nothing more to wait for.
 */
export async function followEvents(runId, { onEvent, onState = () => {}, signal, after = 0, ended } = {}) {
  let last = after;
  let delay = 500;
  const path = `${BASE}/v1/runs/${encodeURIComponent(runId)}/events`;
  while (!signal?.aborted) {
    let finished = false;
    let got = 0;
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      if (last > 0) headers["Last-Event-ID"] = String(last);
      const res = await fetch(path, { headers, signal, cache: "no-store" });
      if (!res.ok) {
        let body = null;
        try {
          body = await res.json();
        } catch {
          // not JSON
        }
        const e = body?.error || {};
        const err = new ApiError(res.status, e.code || `http_${res.status}`, e.message || res.statusText, e.details);
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw err;
        throw Object.assign(err, { retry: true });
      }
      onState("open", last);
      delay = 500;
      const parser = new SseParser((msg) => {
        if (msg.type === "__retry") {
          delay = Math.max(100, Math.min(msg.retry, 30_000));
          return;
        }
        const id = Number.parseInt(msg.id, 10);
        if (!Number.isFinite(id) || id <= last) return; // seen already: a resumed stream may repeat
        let ev;
        try {
          ev = JSON.parse(msg.data);
        } catch {
          return;
        }
        last = id;
        got++;
        onEvent(ev);
        if (ev.type === "run.finished") finished = true;
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
        if (finished) {
          await reader.cancel().catch(() => {});
          break;
        }
      }
      if (finished) {
        onState("finished", last);
        return last;
      }
      if (got === 0 && ended && (await ended(last))) {
        onState("finished", last);
        return last;
      }
    } catch (err) {
      if (signal?.aborted || err.name === "AbortError") return last;
      if (err instanceof ApiError && !err.retry) throw err;
      onState("reconnecting", err.message);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5_000);
      continue;
    }
    onState("reconnecting", "the stream ended early");
    await sleep(delay, signal);
  }
  return last;
}
