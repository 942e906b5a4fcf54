/**
 * Citations in answers: `[n]` markers (also `[1][3]` and `[1, 3]`) become links to the passage
 * they cite, after the Markdown is rendered and never inside code, math or links; numbers the
 * answer's `citations` do not carry stay text. And the pieces the source viewer needs: a file's
 * extracted text cut at its `[page N]` / `## Sheet: X` markers, and where a snippet sits in it.
 */

import { hashForConversation } from "./router";
import type { Citation } from "./types";

/** A marker group: `[` numbers separated by commas `]`. */
const MARKER = /\[(\d{1,6}(?:\s*,\s*\d{1,6})*)\]/g;

/** Elements whose text is never linked. */
const SKIP = "code, pre, a, .math, .katex, kbd, samp";

/** What a citation link says about where it points: "report.pdf, page 7"; for memory, the other
 * conversation too: "memory, from your conversation “Trip”" (and the file's place, for a file). */
export function citationPlace(c: Citation): string {
  const name = c.filename ?? "";
  const file =
    c.file_id == null ? "" : c.page != null ? `${name}, page ${c.page}` : c.sheet != null ? `${name}, sheet ${c.sheet}` : name;
  if (!c.memory) return file;
  const from = `memory, from your conversation “${c.memory.title}”`;
  return file ? `${file} (${from})` : from;
}

/** Whether following a citation opens another conversation (memory of a message) rather than the
 * source viewer (a file's page: this conversation's, or another's). */
export function opensConversation(c: Citation): boolean {
  return !!c.memory && c.file_id == null;
}

/** Turns the answer's `[n]` markers under `root` into links to `citations`. */
export function linkCitations(root: ParentNode, citations: Citation[] | null | undefined): void {
  if (!citations || citations.length === 0) return;
  const byN = new Map(citations.map((c) => [c.n, c]));
  const doc = (root as Node).ownerDocument ?? document;
  const walker = doc.createTreeWalker(root as Node, NodeFilter.SHOW_TEXT);
  const nodes: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n as Text;
    if (t.parentElement?.closest(SKIP)) continue;
    MARKER.lastIndex = 0;
    if (MARKER.test(t.data)) nodes.push(t);
  }
  for (const t of nodes) {
    const text = t.data;
    const frag = doc.createDocumentFragment();
    let at = 0;
    let linked = false;
    MARKER.lastIndex = 0;
    for (let m = MARKER.exec(text); m; m = MARKER.exec(text)) {
      const numbers = m[1]!.split(",").map((s) => Number(s.trim()));
      if (!numbers.some((n) => byN.has(n))) continue;
      linked = true;
      frag.append(text.slice(at, m.index));
      const group = doc.createElement("span");
      group.className = "cite-group";
      group.append("[");
      numbers.forEach((n, i) => {
        if (i > 0) group.append(", ");
        const c = byN.get(n);
        if (!c) {
          group.append(String(n));
          return;
        }
        const a = doc.createElement("a");
        a.className = c.memory ? "cite cite-memory" : "cite";
        // Memory links to the conversation it comes from (a file of it opens in the viewer).
        a.href = c.memory ? hashForConversation(c.memory.conversation_id) : "#";
        a.dataset.n = String(n);
        if (c.memory) a.dataset.conversation = c.memory.conversation_id;
        a.textContent = String(n);
        a.title = `Source: ${citationPlace(c)}`;
        a.setAttribute("aria-label", `Source ${n}: ${citationPlace(c)}`);
        group.append(a);
      });
      group.append("]");
      frag.append(group);
      at = m.index + m[0].length;
    }
    if (!linked) continue;
    frag.append(text.slice(at));
    t.replaceWith(frag);
  }
}

/** One page or sheet of a file's extracted text. */
export interface TextSection {
  /** `page 7`, `sheet Revenue`, or "" for text before the first marker (or a file without any). */
  label: string;
  page: number | null;
  sheet: string | null;
  text: string;
}

/** A file's extracted text cut at its page and sheet markers, in order. */
export function sections(text: string): TextSection[] {
  const out: TextSection[] = [];
  let cur: TextSection = { label: "", page: null, sheet: null, text: "" };
  const lines = text.split("\n");
  for (const line of lines) {
    const t = line.trim();
    const page = /^\[page (\d+)\]$/.exec(t);
    const sheet = page ? null : /^## Sheet: (.+)$/.exec(t);
    if (page || sheet) {
      if (cur.text.trim() || cur.label) out.push(cur);
      cur = page
        ? { label: `page ${page[1]}`, page: Number(page[1]), sheet: null, text: "" }
        : { label: `sheet ${sheet![1]}`, page: null, sheet: sheet![1]!, text: "" };
      continue;
    }
    cur.text += `${line}\n`;
  }
  if (cur.text.trim() || cur.label) out.push(cur);
  return out;
}

/** The section a citation points at: its page or sheet, else the whole text. */
export function sectionOf(text: string, c: Pick<Citation, "page" | "sheet">): TextSection {
  const all = sections(text);
  const found = all.find((s) => (c.page != null ? s.page === c.page : c.sheet != null ? s.sheet === c.sheet : false));
  return found ?? { label: "", page: null, sheet: null, text };
}

/**
 * Where `snippet` sits in `text`, white space compared loosely (the snippet may cross a line
 * break): `[start, end)` in `text`, or null when it is not there.
 */
export function findSnippet(text: string, snippet: string): [number, number] | null {
  const words = snippet.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return null;
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const m = new RegExp(escaped.join("\\s+")).exec(text);
  return m ? [m.index, m.index + m[0].length] : null;
}
