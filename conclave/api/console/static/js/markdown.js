// Markdown → sanitised DOM (marked, then DOMPurify), and the report's numbered citations turned
// into links to the archived sources they name. Both libraries are vendored (see vendor/README.md).

import { marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";

marked.setOptions({ gfm: true, breaks: false });

/** References as a list, one per line (in the file they are lines of one paragraph). */
function listReferences(text) {
  const at = text.search(/^## References\s*$/m);
  if (at < 0) return text;
  return text.slice(0, at) + text.slice(at).replace(/^(\[\d+\]\s)/gm, "- $1");
}

/** Render Markdown into a new element; scripts, handlers and foreign URLs are stripped. */
export function renderMarkdown(text, { cls = "md" } = {}) {
  const html = marked.parse(listReferences(String(text ?? "")), { async: false });
  const clean = DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ["style", "form", "input"] });
  const el = document.createElement("div");
  el.className = cls;
  el.innerHTML = clean; // sanitised above; CSP forbids inline script besides
  for (const img of el.querySelectorAll("img:not([alt])")) img.alt = `image: ${img.getAttribute("src") || "no source"}`;
  for (const a of el.querySelectorAll("a[href]")) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(a.getAttribute("href"))) {
      a.target = "_blank";
      a.rel = "noopener noreferrer";
    }
  }
  return el;
}

/**
 * The references of a report: `[n] path` lines under its `## References` heading.
 * Returns a Map n → path.
 */
export function references(report) {
  const refs = new Map();
  const at = String(report).search(/^## References\s*$/m);
  if (at < 0) return refs;
  for (const m of report.slice(at).matchAll(/^\[(\d+)\]\s+(\S+)/gm)) refs.set(Number(m[1]), m[2]);
  return refs;
}

// A citation: [3] or [1, 4]; not an index like a[1] or x][2] (the same rule as the server's checker).
const CITE = /(?<![\w\])])\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]/g;

/**
 * Turn `[n]` and `[n, m]` in the rendered report into links made by `linkFor(n, path)` (outside
 * code); in the references list (`[n] path` at the start of a line) the path becomes a link too.
 * Numbers without a reference stay text.
 */
export function linkCitations(root, refs, linkFor) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      if (node.parentElement?.closest("code, pre, a")) return NodeFilter.FILTER_REJECT;
      CITE.lastIndex = 0;
      return CITE.test(node.nodeValue) ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT;
    },
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const frag = document.createDocumentFragment();
    const text = node.nodeValue;
    let pos = 0;
    for (const m of text.matchAll(CITE)) {
      if (m.index < pos) continue;
      const nums = m[1].split(",").map((x) => Number(x.trim()));
      if (!nums.every((n) => refs.has(n))) continue;
      frag.append(text.slice(pos, m.index), "[");
      nums.forEach((n, i) => {
        if (i) frag.append(", ");
        frag.append(linkFor(n, refs.get(n)));
      });
      frag.append("]");
      pos = m.index + m[0].length;
      const lineStart = text.lastIndexOf("\n", m.index - 1) + 1;
      const path = refs.get(nums[0]);
      const rest = text.slice(pos);
      if (nums.length === 1 && /^\s*$/.test(text.slice(lineStart, m.index)) && rest.trimStart().startsWith(path)) {
        const lead = rest.length - rest.trimStart().length;
        frag.append(rest.slice(0, lead));
        const a = linkFor(nums[0], path);
        a.textContent = path;
        a.classList.add("ref-path");
        frag.append(a);
        pos += lead + path.length;
      }
    }
    frag.append(text.slice(pos));
    node.replaceWith(frag);
  }
}
