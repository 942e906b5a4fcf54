/**
 * Model output → safe DOM: Markdown (GFM) with `marked`, code highlighted with highlight.js,
 * math ($…$, $$…$$, \(…\), \[…\]) typeset with KaTeX. The HTML from `marked` goes through the
 * sanitizer first; math and the code-block toolbars are added afterwards by this module's own
 * code, so nothing the model wrote reaches the DOM unsanitized.
 */

import { Marked, type Token, type Tokens, type TokenizerAndRendererExtension } from "marked";
import type katexType from "katex";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import cpp from "highlight.js/lib/languages/cpp";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import markdownLang from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import plaintext from "highlight.js/lib/languages/plaintext";
import { sanitizeToFragment } from "./sanitize";

const LANGUAGES = {
  bash, c, cpp, css, diff, go, java, javascript, json, markdown: markdownLang, python, rust, sql,
  typescript, xml, yaml, plaintext,
};
for (const [name, lang] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, lang);
hljs.registerAliases(["sh", "shell", "zsh", "console"], { languageName: "bash" });
hljs.registerAliases(["html", "svg"], { languageName: "xml" });
hljs.registerAliases(["text", "txt"], { languageName: "plaintext" });

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function mathPlaceholder(tex: string, display: boolean): string {
  const cls = display ? "math math-display" : "math math-inline";
  const tag = display ? "div" : "span";
  return `<${tag} class="${cls}" data-tex="${escapeHtml(tex)}">${escapeHtml(tex)}</${tag}>`;
}

interface MathToken extends Tokens.Generic {
  text: string;
  display: boolean;
}

const blockMath: TokenizerAndRendererExtension = {
  name: "blockMath",
  level: "block",
  start(src: string) {
    const m = /(?:^|\n)[ \t]{0,3}(?:\$\$|\\\[)/.exec(src);
    return m ? m.index + (m[0].startsWith("\n") ? 1 : 0) : undefined;
  },
  tokenizer(src: string) {
    const m =
      /^[ \t]{0,3}\$\$([\s\S]+?)\$\$[ \t]*(?:\n+|$)/.exec(src) ??
      /^[ \t]{0,3}\\\[([\s\S]+?)\\\][ \t]*(?:\n+|$)/.exec(src);
    if (!m) return undefined;
    return { type: "blockMath", raw: m[0], text: m[1]!.trim(), display: true } as MathToken;
  },
  renderer(token) {
    return mathPlaceholder((token as MathToken).text, true) + "\n";
  },
};

const inlineMath: TokenizerAndRendererExtension = {
  name: "inlineMath",
  level: "inline",
  start(src: string) {
    const m = /\$|\\\(/.exec(src);
    return m ? m.index : undefined;
  },
  tokenizer(src: string) {
    let m = /^\$\$((?:\\[\s\S]|[^\\$])+?)\$\$/.exec(src);
    if (m) return { type: "inlineMath", raw: m[0], text: m[1]!.trim(), display: true } as MathToken;
    // $…$: no space just inside the dollars and no digit right after the closing one,
    // so that "costs $5 and $10" stays text.
    m = /^\$(?![\s$])((?:\\[\s\S]|[^\\$\n])+?)(?<!\s)\$(?!\d)/.exec(src);
    if (m) return { type: "inlineMath", raw: m[0], text: m[1]!, display: false } as MathToken;
    m = /^\\\(([\s\S]+?)\\\)/.exec(src);
    if (m) return { type: "inlineMath", raw: m[0], text: m[1]!.trim(), display: false } as MathToken;
    return undefined;
  },
  renderer(token) {
    const t = token as MathToken;
    return mathPlaceholder(t.text, t.display);
  },
};

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: [blockMath, inlineMath],
  renderer: {
    code({ text, lang }: Tokens.Code) {
      const language = (lang ?? "").trim().split(/\s+/)[0]!.toLowerCase();
      const known = /^[\w+#.-]+$/.test(language) && hljs.getLanguage(language);
      const body = known
        ? hljs.highlight(text, { language, ignoreIllegals: true }).value
        : escapeHtml(text);
      const cls = language && /^[\w+#.-]+$/.test(language) ? ` class="hljs language-${language}"` : ` class="hljs"`;
      return `<pre><code${cls}>${body}</code></pre>\n`;
    },
  },
});

let katex: typeof katexType | null = null;
let katexLoading: Promise<void> | null = null;

/**
 * Loads KaTeX (and its stylesheet) on first use: most answers have no math, so it stays out of
 * the main bundle. Until it has loaded, formulas show as their TeX source.
 */
export function loadKatex(): Promise<void> {
  katexLoading ??= Promise.all([import("katex"), import("katex/dist/katex.min.css")]).then(([m]) => {
    katex = m.default;
  });
  return katexLoading;
}

const PENDING_MATH = ".math[data-tex]:not([data-typeset])";

function typesetOne(k: typeof katexType, el: HTMLElement): void {
  el.setAttribute("data-typeset", "");
  const tex = el.getAttribute("data-tex") ?? "";
  const display = el.classList.contains("math-display");
  try {
    k.render(tex, el, {
      displayMode: display,
      throwOnError: false,
      trust: false,
      strict: "ignore",
      maxSize: 50,
      maxExpand: 500,
      output: "htmlAndMathml",
    });
  } catch {
    el.textContent = tex;
  }
}

let typesetScheduled = false;

/**
 * Typesets the formulas on the page that waited for KaTeX, 8 ms at a time, one slice after each
 * frame (a long conversation may hold hundreds of them).
 */
function typesetPage(): void {
  if (typesetScheduled || !katex) return;
  typesetScheduled = true;
  const k = katex;
  const step = () => {
    const start = performance.now();
    for (const el of Array.from(document.querySelectorAll<HTMLElement>(PENDING_MATH))) {
      if (performance.now() - start > 8) {
        requestAnimationFrame(() => window.setTimeout(step, 0));
        return;
      }
      typesetOne(k, el);
    }
    typesetScheduled = false;
  };
  step();
}

function typesetMath(root: ParentNode): void {
  const pending = Array.from(root.querySelectorAll<HTMLElement>(PENDING_MATH));
  if (pending.length === 0) return;
  if (!katex) {
    // Typeset what is on the page once KaTeX arrives.
    loadKatex().then(
      () => typesetPage(),
      () => undefined,
    );
    return;
  }
  for (const el of pending) typesetOne(katex, el);
}

function addCodeToolbars(root: ParentNode): void {
  for (const pre of Array.from(root.querySelectorAll("pre"))) {
    if (pre.parentElement?.classList.contains("code-block")) continue;
    const code = pre.querySelector("code");
    const lang = /language-([\w+#.-]+)/.exec(code?.className ?? "")?.[1] ?? "";
    const wrap = document.createElement("div");
    wrap.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.className = "code-lang";
    label.textContent = lang || "code";
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "copy-code";
    btn.textContent = "Copy";
    btn.setAttribute("aria-label", `Copy ${lang || "code"} to clipboard`);
    head.append(label, btn);
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
}

/** Blocks that may scroll sideways are reachable by keyboard. */
function makeScrollablesFocusable(root: ParentNode): void {
  for (const el of Array.from(root.querySelectorAll("pre, table, .math-display"))) {
    el.setAttribute("tabindex", "0");
  }
}

/** Sanitized HTML from `marked` → a fragment with math typeset and code toolbars. */
function finishFragment(html: string): DocumentFragment {
  const frag = sanitizeToFragment(html);
  typesetMath(frag);
  addCodeToolbars(frag);
  makeScrollablesFocusable(frag);
  return frag;
}

/** Renders Markdown from the model into a sanitized fragment. */
export function renderMarkdown(src: string): DocumentFragment {
  return finishFragment(marked.parse(src, { async: false }) as string);
}

/** Renders top-level tokens from `marked`'s lexer (as `renderMarkdown` renders them all). */
function renderTokens(tokens: Token[]): DocumentFragment {
  return finishFragment(marked.parser(tokens));
}

/** Whether any token under `tokens` is raw HTML (block or inline). */
function hasHtml(tokens: readonly Token[]): boolean {
  let found = false;
  marked.walkTokens(tokens as Token[], (t) => {
    if (t.type === "html") found = true;
  });
  return found;
}

/**
 * Whether a finished top-level token may be rendered for good. A `$$` or `\[` it leaves open may
 * still be closed by text further on, and then the display formula would swallow the blocks in
 * between: such a token waits (with everything after it).
 */
function settled(token: Token): boolean {
  if (token.type === "code" || token.type === "blockMath" || token.type === "space") return true;
  const raw = token.raw;
  const dollars = raw.split("$$").length - 1;
  if (dollars % 2 === 1) return false;
  const opens = raw.split("\\[").length - 1;
  const closes = raw.split("\\]").length - 1;
  return opens <= closes;
}

/**
 * Renders a growing Markdown text into `root`, the way `renderMarkdown` renders it whole, at a
 * cost per update that does not grow with the text: the top-level blocks before the last are
 * final once another block follows them (an open code fence, list, table or `$$` formula is one
 * block until it ends), so each is parsed, sanitized, highlighted and typeset once and its DOM
 * kept; only the last block is rendered again on each update. `finish` makes the result exactly
 * the whole render: when the text turns out to hold link reference definitions or raw HTML
 * (which reach across blocks), or the blocks were cut differently than the whole text cuts
 * them, it renders the whole text once.
 */
export class MarkdownStream {
  /** The text shown. */
  private src = "";
  /** How much of `src` is rendered for good, and the raw text of each block in it. */
  private settledLength = 0;
  private settledRaws: string[] = [];
  /** What the unsettled rest of the text put in `root`, and the HTML it was made from (before
   * sanitizing). */
  private tail: ChildNode[] = [];
  private tailHtml = "";
  private started = false;

  constructor(private readonly root: HTMLElement) {}

  /** Shows `src`, which usually extends the text shown before. */
  update(src: string): void {
    if (!this.started || !src.startsWith(this.src.slice(0, this.settledLength))) this.reset();
    this.src = src;
    const tokens = marked.lexer(src.slice(this.settledLength));
    let last = tokens.length - 1;
    while (last >= 0 && tokens[last]!.type === "space") last--;
    let n = 0;
    while (n < last && settled(tokens[n]!)) n++;
    const keep = tokens.slice(0, n);
    const rest = tokens.slice(n);
    const html = rest.length > 0 ? marked.parser(rest) : "";
    // Text that changes nothing shown yet (such as a line break ending a paragraph) is not
    // sanitized and put in the page again.
    if (keep.length === 0 && html === this.tailHtml) return;
    this.removeTail();
    for (const t of keep) {
      this.root.append(renderTokens([t]));
      this.settledRaws.push(t.raw);
      this.settledLength += t.raw.length;
    }
    this.showTailHtml(html);
  }

  /** Shows the final text: the same DOM as `renderMarkdown(src)`. */
  finish(src: string): void {
    if (!this.started || !src.startsWith(this.src.slice(0, this.settledLength))) this.reset();
    this.src = src;
    const tokens = marked.lexer(src);
    const sameCut =
      tokens.length >= this.settledRaws.length && this.settledRaws.every((raw, i) => tokens[i]!.raw === raw);
    const links = (tokens as unknown as { links?: Record<string, unknown> }).links ?? {};
    if (!sameCut || Object.keys(links).length > 0 || hasHtml(tokens)) {
      this.reset();
      this.root.append(renderTokens(tokens));
      return;
    }
    this.removeTail();
    const rest = tokens.slice(this.settledRaws.length);
    this.showTailHtml(rest.length > 0 ? marked.parser(rest) : "");
  }

  private reset(): void {
    this.root.replaceChildren();
    this.started = true;
    this.settledLength = 0;
    this.settledRaws = [];
    this.tail = [];
    this.tailHtml = "";
  }

  private removeTail(): void {
    for (const node of this.tail) node.remove();
    this.tail = [];
    this.tailHtml = "";
  }

  private showTailHtml(html: string): void {
    if (!html) return;
    const frag = finishFragment(html);
    this.tail = Array.from(frag.childNodes);
    this.tailHtml = html;
    this.root.append(frag);
  }
}

/**
 * Renders Markdown in steps, for work split between frames: each call of `step` renders the next
 * top-level block (parsed, sanitized, highlighted, typeset) into a detached element, and returns
 * whether blocks remain; `done` is then the same DOM as `renderMarkdown(src)`, to be put in the
 * page at once. Text holding link reference definitions or raw HTML (which reach across blocks)
 * is rendered whole in one step.
 */
export class MarkdownSteps {
  /** What is rendered so far. */
  readonly done = document.createElement("div");
  private readonly tokens: Token[];
  private next = 0;
  private readonly whole: boolean;

  constructor(src: string) {
    this.tokens = marked.lexer(src);
    const links = (this.tokens as unknown as { links?: Record<string, unknown> }).links ?? {};
    this.whole = Object.keys(links).length > 0 || hasHtml(this.tokens);
  }

  /** Renders the next block; false once everything is rendered. */
  step(): boolean {
    if (this.whole) {
      if (this.next === 0) this.done.append(renderTokens(this.tokens));
      this.next = this.tokens.length;
      return false;
    }
    const skipSpace = () => {
      while (this.next < this.tokens.length && this.tokens[this.next]!.type === "space") this.next++;
    };
    skipSpace();
    if (this.next < this.tokens.length) this.done.append(renderTokens([this.tokens[this.next++]!]));
    skipSpace();
    return this.next < this.tokens.length;
  }

  /** Renders what is left and puts the result in `root` (in the page), in place of what it
   * held. Formulas rendered while KaTeX was still loading are typeset once it has loaded. */
  finishInto(root: HTMLElement): void {
    while (this.step());
    root.replaceChildren(...Array.from(this.done.childNodes));
    typesetMath(root);
  }
}

/** The same as `renderMarkdown`, serialized (for tests and previews). */
export function renderMarkdownToHtml(src: string): string {
  const div = document.createElement("div");
  div.append(renderMarkdown(src));
  return div.innerHTML;
}
