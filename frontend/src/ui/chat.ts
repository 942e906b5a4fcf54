/**
 * The message column: the branch shown, the answer being streamed (rendered as Markdown once per
 * frame by `MarkdownStream`, which renders only its last block again; resumed where it was after
 * a reload), attachments with download links, copy buttons on code, Regenerate on answers and Edit
 * on questions, "‹ 2 / 3 ›" between a message's versions, and an auto-scroll (from a
 * ResizeObserver) that follows the answer until the user scrolls up.
 */

import type { Api } from "../api";
import { linkCitations, opensConversation } from "../citations";
import { fileTypeLabel, formatBytes } from "../files";
import { MarkdownStream, MarkdownSteps } from "../markdown";
import { receiptLines } from "../receipt";
import type { SiblingPlace } from "../tree";
import type { Citation, FileMeta, Message, Receipt } from "../types";
import { afterNextFrame, copyText, h, icon } from "./dom";
import { SourceViewer } from "./source";

/** What the reader can do to the messages shown. */
export interface HistoryActions {
  /** Answer the question of this answer again. */
  regenerate(answerId: string): void;
  /** Send a new version of this question. */
  edit(messageId: string, text: string): void;
  /** Show the branch through this message. */
  show(messageId: string): void;
}

/** A file as shown on a message: from the server, or an attachment just sent. */
export interface ShownFile {
  id: string | null;
  filename: string;
  file_type: string;
  size: number;
  previewUrl?: string | null;
}

export function shownFromMeta(f: FileMeta): ShownFile {
  return { id: f.id, filename: f.filename, file_type: f.file_type, size: f.size };
}

const STICK_THRESHOLD_PX = 48;

/** Time for rendering the newest answers of a conversation opened, before it is first shown. */
const HISTORY_FIRST_MS = 12;
/** How many of a conversation's newest messages are built at once when it is opened. */
const HISTORY_FIRST_MESSAGES = 10;
/** How many older messages a slice builds at most (each new message costs the next frame its
 * style and layout). */
const HISTORY_BATCH_MESSAGES = 8;
/** Time for each later slice of work on a conversation shown (building its older messages,
 * rendering the answers that near the view), one slice after each frame, so that the frame keeps
 * the rest of its 16.7 ms for its own style, layout and paint. */
const SLICE_MS = 5;
/** How far above and below the view an answer's Markdown is rendered ahead of being seen. */
const RENDER_MARGIN_PX = 1600;

/** An answer whose Markdown is not rendered yet: it is rendered in steps (a block at a time, in
 * slices between frames) and put in the page at once. */
interface LazyAnswer {
  el: HTMLElement;
  body: HTMLElement;
  message: Message;
  /** Set once its rendering started. */
  steps: MarkdownSteps | null;
  /** How far from the view it was when last reported near it (px). */
  distance: number;
}

/** About the height of an answer's Markdown once rendered (px): its source's lines, wrapped at
 * ~90 characters, at ~24 px each. Its place keeps this height until it is rendered, so that the
 * scroll bar and the view hardly move when it is. */
export function estimatedHeight(src: string): number {
  let lines = 0;
  for (const line of src.split("\n")) lines += Math.max(1, Math.ceil(line.length / 90));
  return Math.round(lines * 24);
}

/** The Markdown source of each answer shown, for its Copy button. */
const answerSource = new WeakMap<HTMLElement, string>();

/** The passages each answer shown cites, for its `[n]` links. */
const answerCitations = new WeakMap<HTMLElement, Citation[]>();

/** Links the `[n]` markers of an answer's rendered text to the passages it cites. */
function showCitations(el: HTMLElement, citations: Citation[] | null | undefined): void {
  if (!citations || citations.length === 0) return;
  answerCitations.set(el, citations);
  const body = el.querySelector<HTMLElement>(".msg-content");
  if (body) linkCitations(body, citations);
}

/** Adds the actions row under a finished answer: Copy (when it has text), Regenerate (once the
 * server named it). */
function addAnswerActions(el: HTMLElement, text: string): void {
  el.querySelector(".msg-actions")?.remove();
  const row = h("div", { class: "msg-actions" });
  if (text) {
    answerSource.set(el, text);
    const copy = h("button", { type: "button", class: "btn btn-small copy-answer", text: "Copy" });
    copy.setAttribute("aria-label", "Copy the answer as Markdown");
    row.append(copy);
  }
  if (el.dataset.id) {
    const again = h("button", { type: "button", class: "btn btn-small regenerate", text: "Regenerate" });
    again.setAttribute("aria-label", "Regenerate: answer this question again");
    row.append(again);
  }
  if (row.childElementCount === 0) return;
  const nav = el.querySelector(".msg-branches");
  if (nav) row.append(nav);
  el.querySelector(".msg-content")?.after(row);
}

/** Adds Edit under a question the server has stored. */
export function addUserActions(el: HTMLElement): void {
  if (!el.dataset.id || el.querySelector(".edit-message")) return;
  const edit = h("button", { type: "button", class: "btn btn-small edit-message", text: "Edit" });
  edit.setAttribute("aria-label", "Edit this message");
  const row = el.querySelector(".msg-actions") ?? h("div", { class: "msg-actions" });
  row.prepend(edit);
  if (!row.isConnected) el.append(row);
}

/** "‹ 2 / 3 ›": moves between the versions of a message (its siblings). */
function branchNav(place: SiblingPlace): HTMLElement {
  const prev = h("button", {
    type: "button",
    class: "icon-btn branch-prev",
    "aria-label": "Previous version",
    "data-target": place.prev,
    disabled: !place.prev,
    text: "‹",
  });
  const next = h("button", {
    type: "button",
    class: "icon-btn branch-next",
    "aria-label": "Next version",
    "data-target": place.next,
    disabled: !place.next,
    text: "›",
  });
  return h(
    "div",
    { class: "msg-branches", role: "group", "aria-label": `Version ${place.index} of ${place.count}` },
    prev,
    h("span", { class: "branch-count", text: `${place.index} / ${place.count}` }),
    next,
  );
}

/** Adds the receipt under an answer: a small label whose tooltip (on hover or focus) says the
 * model, the tokens, the cost and the times. */
function addReceipt(el: HTMLElement, usage: Receipt): void {
  el.querySelector(".msg-receipt")?.remove();
  const lines = receiptLines(usage);
  const label = h("span", {
    class: "msg-receipt",
    role: "note",
    tabindex: "0",
    title: lines.join("\n"),
    "aria-label": `Receipt. ${lines.join(". ")}`,
    text: usage.model,
  });
  let row = el.querySelector(".msg-actions");
  if (!row) {
    row = h("div", { class: "msg-actions" });
    el.querySelector(".msg-content")?.after(row);
  }
  row.append(label);
}

export class ChatView {
  /** Counts the branches shown, so that the slices of one no longer shown stop. */
  private historyRun = 0;
  /** The run a slice is scheduled for (-1: none). */
  private sliceFor = -1;
  /** The oldest messages of the branch shown, not built yet (they are built in slices and put
   * above the others). */
  private unbuilt: { messages: Message[]; places?: Map<string, SiblingPlace> } | null = null;
  /** The answers shown whose Markdown is not rendered yet, by element. */
  private readonly lazy = new Map<HTMLElement, LazyAnswer>();
  /** Those near the view, nearest first: rendered a block at a time, in slices. */
  private wanted: LazyAnswer[] = [];
  /** Reports the answers that come within RENDER_MARGIN_PX of the view. */
  private readonly near: IntersectionObserver;
  /** Whether new content scrolls the view (false once the user scrolls up). */
  private stick = true;
  private lastScrollTop = 0;
  /** What the buttons on messages do (set by the app). */
  actions: HistoryActions | null = null;
  /** Opens cited passages (made on the first citation followed). */
  private sources: SourceViewer | null = null;

  constructor(
    private readonly api: Api,
    private readonly scroller: HTMLElement,
    private readonly list: HTMLElement,
    private readonly empty: HTMLElement,
    private readonly jump: HTMLButtonElement,
  ) {
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    const resized = new ResizeObserver(() => this.onResize());
    resized.observe(list);
    resized.observe(scroller);
    this.near = new IntersectionObserver((entries) => this.onNear(entries), {
      root: scroller,
      rootMargin: `${RENDER_MARGIN_PX}px 0px`,
    });
    jump.addEventListener("click", () => this.scrollToBottom());
    list.addEventListener("click", (e) => {
      const target = e.target as Element;
      const cite = target.closest<HTMLAnchorElement>("a.cite");
      if (cite) {
        const msg = cite.closest<HTMLElement>(".msg-assistant");
        const c = msg ? answerCitations.get(msg)?.find((x) => String(x.n) === cite.dataset.n) : undefined;
        // Memory of a message: the link opens that conversation (its hash).
        if (c && opensConversation(c)) return;
        e.preventDefault();
        if (c) {
          this.sources ??= new SourceViewer(this.api);
          void this.sources.open(c);
        }
        return;
      }
      const msgId = target.closest<HTMLElement>(".msg")?.dataset.id;
      if (target.closest(".regenerate") && msgId) {
        this.actions?.regenerate(msgId);
        return;
      }
      if (target.closest(".edit-message") && msgId) {
        this.startEdit(target.closest<HTMLElement>(".msg")!);
        return;
      }
      const branch = target.closest<HTMLButtonElement>(".branch-prev, .branch-next");
      if (branch?.dataset.target) {
        this.actions?.show(branch.dataset.target);
        return;
      }
      const answerBtn = (e.target as Element).closest<HTMLButtonElement>(".copy-answer");
      if (answerBtn) {
        const msg = answerBtn.closest<HTMLElement>(".msg-assistant");
        const text = msg ? answerSource.get(msg) : undefined;
        if (text) {
          copyText(text).then(
            () => this.flash(answerBtn, "Copied"),
            () => this.flash(answerBtn, "Copy failed"),
          );
        }
        return;
      }
      const btn = (e.target as Element).closest<HTMLButtonElement>(".copy-code");
      if (!btn) return;
      const code = btn.closest(".code-block")?.querySelector("pre code");
      if (!code) return;
      copyText(code.textContent ?? "").then(
        () => this.flash(btn, "Copied"),
        () => this.flash(btn, "Copy failed"),
      );
    });
  }

  private flash(btn: HTMLButtonElement, text: string): void {
    btn.textContent = text;
    window.setTimeout(() => (btn.textContent = "Copy"), 1500);
  }

  private onScroll(): void {
    const el = this.scroller;
    const distance = el.scrollHeight - el.scrollTop - el.clientHeight;
    if (el.scrollTop < this.lastScrollTop - 2 && distance > STICK_THRESHOLD_PX) this.stick = false;
    else if (distance <= STICK_THRESHOLD_PX) this.stick = true;
    this.lastScrollTop = el.scrollTop;
    this.jump.hidden = this.stick || distance <= STICK_THRESHOLD_PX;
  }

  /**
   * Runs when the messages change size, after the browser has laid them out for the frame: the
   * view follows the newest content from here (reading the layout costs nothing then), so the
   * code that changes the messages never reads the layout it has just made stale.
   */
  private onResize(): void {
    const el = this.scroller;
    const distance = el.scrollHeight - el.scrollTop - el.clientHeight;
    if (this.stick && distance > 0) el.scrollTop = el.scrollHeight;
    if (this.stick) this.lastScrollTop = el.scrollTop;
    const hide = this.stick || distance <= STICK_THRESHOLD_PX;
    if (this.jump.hidden !== hide) this.jump.hidden = hide;
  }

  /** Follows the newest content from now on (it is scrolled to once laid out, in `onResize`). */
  scrollToBottom(): void {
    this.stick = true;
    this.jump.hidden = true;
    if (this.scroller.isConnected) this.onResize();
  }

  private updateEmpty(): void {
    this.empty.hidden = this.list.childElementCount > 0;
  }

  /** Starts showing something else: the slices of what was shown stop. */
  private newRun(): number {
    this.near.disconnect();
    this.lazy.clear();
    this.wanted = [];
    this.unbuilt = null;
    return ++this.historyRun;
  }

  clear(): void {
    this.newRun();
    this.list.replaceChildren();
    this.stick = true;
    this.jump.hidden = true;
    this.updateEmpty();
  }

  showLoading(): void {
    this.newRun();
    this.list.replaceChildren(h("p", { class: "notice", role: "status", text: "Loading conversation…" }));
    this.updateEmpty();
  }

  showNotice(text: string, action?: { label: string; run: () => void }): void {
    const p = h("div", { class: "notice notice-error", role: "alert" }, h("span", { text }));
    if (action) {
      const b = h("button", { type: "button", class: "btn btn-small", text: action.label });
      b.addEventListener("click", action.run);
      p.append(b);
    }
    this.newRun();
    this.list.replaceChildren(p);
    this.updateEmpty();
  }

  /**
   * Shows a branch. `places` gives each message's place among its versions; the answer
   * `generating` is left empty, for a stream to fill ([`resumeAnswer`]).
   *
   * A long branch shows at once and never blocks input: only the newest messages are built in
   * this task, and only the newest answers' Markdown rendered (what fits in HISTORY_FIRST_MS).
   * The rest is done in slices of SLICE_MS between frames, a Markdown block or a message at a
   * time (`slice`): first the answers that near the view, nearest first; then the older messages
   * are built, a few at a time, and put above the others without moving the view: it follows the
   * bottom (`onResize`) or, scrolled up, stays on what it shows (CSS scroll anchoring); then the
   * other answers are rendered. An answer not rendered yet is an empty place of about its
   * rendered height (`estimatedHeight`), marked busy.
   */
  renderHistory(
    messages: Message[],
    opts: { places?: Map<string, SiblingPlace>; generating?: string | null } = {},
  ): void {
    this.newRun();
    const generatingAt = opts.generating ? messages.findIndex((m) => m.id === opts.generating) : -1;
    let first = Math.max(0, messages.length - HISTORY_FIRST_MESSAGES);
    if (generatingAt >= 0) first = Math.min(first, generatingAt);
    const shown = messages
      .slice(first)
      .map((m) => this.messageEl(m, opts.places?.get(m.id), m.id === opts.generating));
    this.list.replaceChildren(...shown);
    if (first > 0) this.unbuilt = { messages: messages.slice(0, first), places: opts.places };
    this.updateEmpty();
    this.stick = true;
    this.jump.hidden = true;
    // The newest answers, a block at a time while the time lasts; one begun and not finished is
    // finished first in the slices.
    const start = performance.now();
    for (let i = shown.length - 1; i >= 0 && performance.now() - start < HISTORY_FIRST_MS; i--) {
      const answer = this.lazy.get(shown[i]!);
      if (!answer) continue;
      const steps = (answer.steps = new MarkdownSteps(answer.message.content));
      let more = true;
      while (more && performance.now() - start < HISTORY_FIRST_MS) more = steps.step();
      if (more) {
        answer.distance = 0;
        this.wanted.unshift(answer);
      } else this.renderNow(answer);
    }
    this.schedule();
  }

  /** Queues the answers that came near the view (nearest first); drops those that left it. */
  private onNear(entries: IntersectionObserverEntry[]): void {
    for (const e of entries) {
      const answer = this.lazy.get(e.target as HTMLElement);
      if (!answer) continue;
      const at = this.wanted.indexOf(answer);
      if (at >= 0) this.wanted.splice(at, 1);
      // One begun is finished wherever it is.
      if (!e.isIntersecting && !answer.steps) continue;
      const r = e.boundingClientRect;
      const root = e.rootBounds;
      answer.distance = root
        ? Math.max(0, root.top + RENDER_MARGIN_PX - r.bottom, r.top - (root.bottom - RENDER_MARGIN_PX))
        : 0;
      let i = 0;
      while (i < this.wanted.length && this.wanted[i]!.distance <= answer.distance) i++;
      this.wanted.splice(i, 0, answer);
    }
    this.schedule();
  }

  /** Runs a slice after the next frame, if there is work left. */
  private schedule(): void {
    const run = this.historyRun;
    if (this.sliceFor === run || (this.lazy.size === 0 && !this.unbuilt)) return;
    this.sliceFor = run;
    afterNextFrame(() => {
      if (this.sliceFor === run) this.sliceFor = -1;
      if (run === this.historyRun) this.slice();
    });
  }

  /**
   * SLICE_MS of work, a Markdown block or a message at a time: the answers near the view, then
   * the older messages not built yet, then the other answers (newest first), so that everything
   * is rendered soon even where the reader does not go (and found whole by find-in-page).
   */
  private slice(): void {
    const start = performance.now();
    const older: HTMLElement[] = [];
    while (performance.now() - start < SLICE_MS) {
      let answer = this.wanted[0];
      if (answer && this.lazy.get(answer.el) !== answer) {
        this.wanted.shift();
        continue;
      }
      if (!answer && this.unbuilt && older.length < HISTORY_BATCH_MESSAGES) {
        const { messages, places } = this.unbuilt;
        const m = messages.pop()!;
        older.unshift(this.messageEl(m, places?.get(m.id), false));
        if (messages.length === 0) this.unbuilt = null;
        continue;
      }
      answer ??= this.lazy.values().next().value;
      if (!answer) break;
      answer.steps ??= new MarkdownSteps(answer.message.content);
      if (!answer.steps.step()) this.renderNow(answer);
    }
    if (older.length > 0) this.list.prepend(...older);
    this.schedule();
  }

  /** Renders an answer's Markdown now (what is left of it) and puts it in the page. */
  private renderNow(answer: LazyAnswer): void {
    const at = this.wanted.indexOf(answer);
    if (at >= 0) this.wanted.splice(at, 1);
    this.lazy.delete(answer.el);
    this.near.unobserve(answer.el);
    answer.steps ??= new MarkdownSteps(answer.message.content);
    answer.steps.finishInto(answer.body);
    answer.body.removeAttribute("style");
    answer.body.removeAttribute("aria-busy");
    showCitations(answer.el, answer.message.citations);
  }

  /** The answer being generated, shown by [`renderHistory`], as a stream to fill. */
  resumeAnswer(id: string): StreamingAnswer | null {
    const el = this.list.querySelector<HTMLElement>(`.msg-assistant[data-id="${CSS.escape(id)}"]`);
    if (!el) return null;
    el.querySelector(".msg-content")?.replaceChildren();
    return new StreamingAnswer(el);
  }

  /** The element of a message shown. */
  elementOf(id: string): HTMLElement | null {
    return this.list.querySelector<HTMLElement>(`.msg[data-id="${CSS.escape(id)}"]`);
  }

  /** Removes `el` and every message after it (a regenerated answer or an edit replaces them). */
  removeFrom(el: HTMLElement): void {
    const gone = (x: Element) => {
      this.lazy.delete(x as HTMLElement);
      this.near.unobserve(x);
      x.remove();
    };
    while (el.nextElementSibling) gone(el.nextElementSibling);
    gone(el);
    this.updateEmpty();
  }

  /** Turns a question into a text box with Save and Cancel. */
  private startEdit(el: HTMLElement): void {
    if (el.querySelector(".edit-box")) return;
    const id = el.dataset.id;
    const content = el.querySelector<HTMLElement>(".msg-text");
    const old = content?.textContent ?? "";
    const box = h("textarea", { class: "edit-box", "aria-label": "Edit your message", rows: 3 });
    box.value = old;
    const save = h("button", { type: "submit", class: "btn btn-small btn-primary edit-save", text: "Send" });
    const cancel = h("button", { type: "button", class: "btn btn-small edit-cancel", text: "Cancel" });
    const form = h("form", { class: "edit-form" }, box, h("div", { class: "edit-buttons" }, cancel, save));
    const hidden = [content, el.querySelector<HTMLElement>(".msg-actions")].filter((x): x is HTMLElement => !!x);
    for (const x of hidden) x.hidden = true;
    el.append(form);
    box.focus();
    const close = () => {
      form.remove();
      for (const x of hidden) x.hidden = false;
    };
    cancel.addEventListener("click", close);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        close();
      } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = box.value.trim();
      if (!text || !id) return;
      close();
      this.actions?.edit(id, text);
    });
  }

  /** A message of a branch shown; an answer's Markdown is rendered later, in slices (`slice`). */
  private messageEl(m: Message, place: SiblingPlace | undefined, generating: boolean): HTMLElement {
    const files = (m.files ?? []).map(shownFromMeta);
    if (m.role === "user") {
      const el = this.userEl(m.content, files, m.id);
      addUserActions(el);
      if (place && place.count > 1) el.querySelector(".msg-actions")?.append(branchNav(place));
      return el;
    }
    const el = this.assistantShell(m.id);
    if (place && place.count > 1) el.append(branchNav(place));
    if (generating) return el;
    const body = el.querySelector<HTMLElement>(".msg-content")!;
    if (m.content) {
      body.setAttribute("aria-busy", "true");
      body.style.minHeight = `${estimatedHeight(m.content)}px`;
      this.lazy.set(el, { el, body, message: m, steps: null, distance: Infinity });
      this.near.observe(el);
    } else showCitations(el, m.citations);
    addAnswerActions(el, m.content);
    if (m.usage) addReceipt(el, m.usage);
    if (m.status === "incomplete") {
      el.append(h("p", { class: "msg-note", text: "This answer was interrupted before it finished." }));
    } else if (m.status === "error") {
      el.classList.add("msg-failed");
      el.append(h("p", { class: "msg-note msg-note-error", text: "The model failed to answer this message." }));
    }
    return el;
  }

  private userEl(text: string, files: ShownFile[], id?: string): HTMLElement {
    const el = h(
      "article",
      { class: "msg msg-user", "data-id": id ?? null, "aria-label": "Your message" },
      files.length ? this.filesEl(files) : null,
      text ? h("div", { class: "msg-content msg-text", text }) : null,
    );
    return el;
  }

  private assistantShell(id?: string): HTMLElement {
    return h(
      "article",
      { class: "msg msg-assistant", "data-id": id ?? null, "aria-label": "Answer" },
      h("div", { class: "msg-avatar", "aria-hidden": "true" }, icon("spark")),
      h("div", { class: "msg-content markdown" }),
    );
  }

  private filesEl(files: ShownFile[]): HTMLElement {
    return h(
      "ul",
      { class: "msg-files", "aria-label": "Attachments" },
      ...files.map((f) => {
        const label = `${fileTypeLabel(f.file_type)} · ${formatBytes(f.size)}`;
        // Plain link and <img>, never fetch(): on AWS the API answers 302 to a presigned S3 URL on
        // another origin, which navigation and images follow without CORS; S3 sends the file name.
        // Signed in, a link cannot carry the bearer token: the bytes are fetched with it and shown
        // or saved from an object URL instead.
        const href = f.id ? this.api.downloadUrl(f.id) : null;
        const fetched = !!f.id && this.api.authenticated;
        const preview =
          f.file_type === "image" && (f.previewUrl || href)
            ? h("img", { class: "file-thumb", src: f.previewUrl || (fetched ? null : href), alt: f.filename, loading: "lazy" })
            : h("span", { class: `chip-icon ft-${f.file_type}`, "aria-hidden": "true", text: fileTypeLabel(f.file_type).slice(0, 4) });
        if (fetched && !f.previewUrl && preview instanceof HTMLImageElement) {
          this.api.fileObjectUrl(f.id!).then(
            (url) => (preview.src = url),
            () => undefined,
          );
        }
        const name = href
          ? h("a", { class: "file-name", href, download: f.filename, title: `Download ${f.filename}`, text: f.filename })
          : h("span", { class: "file-name", text: f.filename });
        if (fetched && name instanceof HTMLAnchorElement) {
          name.addEventListener("click", (e) => {
            e.preventDefault();
            void this.api.fileObjectUrl(f.id!).then((url) => {
              const a = h("a", { href: url, download: f.filename, hidden: true });
              document.body.append(a);
              a.click();
              a.remove();
              window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
            });
          });
        }
        return h(
          "li",
          { class: "msg-file" },
          preview,
          h("span", { class: "file-body" }, name, h("span", { class: "file-meta", text: label })),
        );
      }),
    );
  }

  /** Shows the user's message at once, before the server has answered. */
  addUserMessage(text: string, files: ShownFile[]): HTMLElement {
    const el = this.userEl(text, files);
    this.list.append(el);
    this.updateEmpty();
    this.scrollToBottom();
    return el;
  }

  /** Starts an answer that will be filled token by token. */
  startAnswer(): StreamingAnswer {
    const el = this.assistantShell();
    this.list.append(el);
    this.updateEmpty();
    return new StreamingAnswer(el);
  }
}

/** The answer being streamed. */
export class StreamingAnswer {
  text = "";
  private frame = 0;
  private readonly content: HTMLElement;
  private readonly markdown: MarkdownStream;

  /** `el` grows as the answer streams: the view follows it from a ResizeObserver (`ChatView`),
   * so nothing here reads the layout it changes. */
  constructor(readonly el: HTMLElement) {
    this.content = el.querySelector<HTMLElement>(".msg-content")!;
    this.markdown = new MarkdownStream(this.content);
    this.content.setAttribute("aria-live", "polite");
    this.content.setAttribute("aria-busy", "true");
    this.content.append(h("span", { class: "typing", role: "img", "aria-label": "Writing the answer" }, h("i"), h("i"), h("i")));
    el.classList.add("streaming");
  }

  /** The answer waits for its model: its place in line (1 = next). */
  queued(position: number): void {
    let q = this.el.querySelector<HTMLElement>(".msg-queued");
    if (!q) {
      q = h("p", { class: "msg-queued", role: "status" });
      this.content.before(q);
    }
    q.textContent =
      position <= 1 ? "Waiting for the model: this answer is next in line." : `Waiting for the model: number ${position} in line.`;
  }

  append(t: string): void {
    this.el.querySelector(".msg-queued")?.remove();
    this.text += t;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  private render(): void {
    this.markdown.update(this.text);
  }

  setId(id: string): void {
    this.el.dataset.id = id;
  }

  /** Ends the stream: renders the last text and clears the busy state; `usage` is the receipt,
   * `citations` the passages the answer cites (its `[n]` become links). */
  finish(usage?: Receipt, citations?: Citation[]): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.text) {
      this.markdown.finish(this.text);
    } else this.content.replaceChildren();
    showCitations(this.el, citations);
    this.content.setAttribute("aria-busy", "false");
    this.el.classList.remove("streaming");
    this.el.querySelector(".msg-queued")?.remove();
    addAnswerActions(this.el, this.text);
    if (usage) addReceipt(this.el, usage);
  }

  note(text: string, kind: "info" | "error" = "info"): HTMLElement {
    this.el.querySelector(".msg-note")?.remove();
    const p = h("div", {
      class: `msg-note${kind === "error" ? " msg-note-error" : ""}`,
      role: kind === "error" ? "alert" : "status",
    });
    p.append(h("span", { class: "msg-note-text", text }));
    this.el.append(p);
    return p;
  }
}
