// A run's workspace: the file tree (`GET /v1/runs/{id}/workspace`), any file viewed
// (`…/workspace/{path}`), report.md rendered as Markdown with its numbered citations as links
// that open the archived source beside it, and the tarball (`…/workspace.tar.gz`).

import { api, download } from "../api.js";
import { fmtInt, h } from "../dom.js";
import { linkCitations, references, renderMarkdown } from "../markdown.js";
import { notFound } from "./run.js";

const TEXT_TYPES = /^(text\/|application\/(json|xml|x-yaml|yaml|toml|javascript))/;

function tree(files) {
  const root = { dirs: new Map(), files: [] };
  for (const f of files) {
    const parts = f.path.split("/");
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
      node = node.dirs.get(dir);
    }
    node.files.push(f);
  }
  return root;
}

async function readFile(runId, path, signal) {
  const res = await api(`/v1/runs/${encodeURIComponent(runId)}/workspace/${path.split("/").map(encodeURIComponent).join("/")}`, {
    raw: true,
    signal,
    headers: { Accept: "*/*" },
  });
  const type = res.headers.get("content-type") || "";
  const bytes = new Uint8Array(await res.arrayBuffer());
  const binary = !TEXT_TYPES.test(type) && bytes.subarray(0, 4096).includes(0);
  return { type, bytes, binary, text: binary ? "" : new TextDecoder().decode(bytes) };
}

export async function render(main, params, ctx) {
  const id = params.get("id");
  const ac = new AbortController();
  let listing;
  try {
    listing = await api(`/v1/runs/${encodeURIComponent(id)}/workspace`, { signal: ac.signal });
  } catch (err) {
    if (err.status === 404) {
      notFound(main, id, err);
      return () => ac.abort();
    }
    throw err;
  }
  const paths = new Set(listing.files.map((f) => f.path));
  const wanted = params.get("file");
  const file = wanted && paths.has(wanted) ? wanted : ["report.md", "index.md"].find((p) => paths.has(p)) || listing.files[0]?.path;
  const source = params.get("source");
  const route = (f, s) => {
    const q = new URLSearchParams();
    if (f) q.set("file", f);
    if (s) q.set("source", s);
    return `#/runs/${encodeURIComponent(id)}/workspace?${q}`;
  };

  const openAll = listing.files.length <= 40; // a small tree is shown whole
  function branch(node, prefix) {
    const items = [];
    for (const [name, child] of [...node.dirs.entries()].sort()) {
      const dirPath = prefix + name + "/";
      items.push(
        h(
          "li",
          { class: "dir" },
          h("details", { open: openAll || file?.startsWith(dirPath) || dirPath.split("/").length <= 2 }, h("summary", { text: name + "/" }), branch(child, dirPath)),
        ),
      );
    }
    for (const f of node.files.sort((a, b) => a.path.localeCompare(b.path))) {
      const name = f.path.split("/").pop();
      items.push(
        h(
          "li",
          { class: "file" },
          h("a", { href: route(f.path), "aria-current": f.path === file ? "page" : false, text: name, title: `${f.path} · ${fmtInt(f.size)} bytes` }),
          h("span", { class: "muted small", text: ` ${fmtInt(f.size)} B` }),
        ),
      );
    }
    return h("ul", {}, items);
  }

  const viewer = h("section", { class: "viewer", id: "viewer", "aria-labelledby": "viewer-h" });
  const side = h("aside", { class: "source-pane", id: "source-pane", "aria-labelledby": "source-h", hidden: !source });
  const dl = h("button", {
    type: "button",
    text: "Download workspace (.tar.gz)",
    on: {
      async click() {
        dl.disabled = true;
        try {
          await download(`/v1/runs/${encodeURIComponent(id)}/workspace.tar.gz`, `${id}-workspace.tar.gz`);
          dlState.textContent = "Downloaded.";
        } catch (err) {
          dlState.textContent = `Download failed: ${err.message}`;
        } finally {
          dl.disabled = false;
        }
      },
    },
  });
  const dlState = h("span", { class: "muted", role: "status" });
  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Workspace of ", h("a", { class: "mono", href: `#/runs/${encodeURIComponent(id)}`, text: id })),
    h("p", { class: "actions" }, dl, " ", dlState, h("span", { class: "muted", text: ` ${listing.files.length} files, ${fmtInt(listing.total_bytes)} bytes` })),
    listing.files.length
      ? h(
          "div",
          { class: `workspace${source ? " with-source" : ""}` },
          h("nav", { class: "tree", "aria-label": "Files" }, branch(tree(listing.files), "")),
          viewer,
          side,
        )
      : h("p", { class: "empty", text: "The workspace is empty (nothing committed yet)." }),
  );
  if (!file) return () => ac.abort();

  /** Links inside a rendered file: citations and relative paths open in the console. */
  function localLinks(el, from) {
    const dir = from.includes("/") ? from.slice(0, from.lastIndexOf("/") + 1) : "";
    for (const a of el.querySelectorAll("a[href]")) {
      const href = a.getAttribute("href");
      if (/^[a-z][a-z0-9+.-]*:|^#|^\//i.test(href)) continue;
      const target = new URL(href, `http://x/${dir}`).pathname.slice(1);
      if (paths.has(target)) a.setAttribute("href", route(from === file ? file : target, from === file ? target : null));
    }
  }

  async function show(container, path, headingId, { cite = false, close = false } = {}) {
    container.replaceChildren(h("h2", { id: headingId, tabindex: "-1" }, h("span", { class: "mono", text: path })), h("p", { class: "muted", text: "Loading…" }));
    let f;
    try {
      f = await readFile(id, path, ac.signal);
    } catch (err) {
      container.lastChild.textContent = `Could not read ${path}: ${err.message}`;
      return;
    }
    const head = container.firstChild;
    if (close) head.append(" ", h("a", { class: "button small", href: route(file), text: "Close source" }));
    let body;
    if (f.binary) {
      body = h("p", {}, `A binary file of ${fmtInt(f.bytes.length)} bytes. `, h("button", { type: "button", text: "Download it", on: { click: () => download(`/v1/runs/${encodeURIComponent(id)}/workspace/${path}`, path.split("/").pop()) } }));
    } else if (path.endsWith(".md") || f.type.startsWith("text/markdown")) {
      body = renderMarkdown(f.text);
      if (cite) {
        const refs = references(f.text);
        linkCitations(body, refs, (n, p) =>
          h("a", { href: route(file, p), class: "cite", dataset: { ref: n }, title: p, "aria-label": `source ${n}: ${p}`, text: String(n) }),
        );
      }
      localLinks(body, path);
      body.append(h("details", { class: "raw" }, h("summary", { text: "Show the Markdown source" }), h("pre", { class: "text", text: f.text })));
    } else {
      body = h("pre", { class: "text file" }, f.text);
    }
    container.replaceChildren(head, body);
  }

  await show(viewer, file, "viewer-h", { cite: file.endsWith(".md") });
  if (source) {
    if (paths.has(source)) {
      await show(side, source, "source-h", { close: true });
      if (ctx.focusSource) document.getElementById("source-h")?.focus();
    } else {
      side.replaceChildren(h("h2", { id: "source-h", text: "Source not found" }), h("p", { text: `${source} is not in this workspace.` }));
    }
  }
  return () => ac.abort();
}
