import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { Api } from "../src/api";
import { loadKatex, renderMarkdownToHtml } from "../src/markdown";
import type { Message } from "../src/types";
import { ChatView, estimatedHeight } from "../src/ui/chat";
// @ts-expect-error: a JavaScript module of the benchmark, without types.
import { section } from "../bench/answer.mjs";

beforeAll(() => loadKatex());

/** A branch of `turns` questions, each answered with a section of the benchmark's answer. */
function branch(turns: number, prefix = "m"): Message[] {
  const out: Message[] = [];
  for (let i = 0; i < turns; i++) {
    const base = { conversation_id: "c", files: [], token_count: null, status: "complete" as const, created_at: "" };
    out.push({ ...base, id: `${prefix}q${i}`, role: "user", content: `Question ${i}` });
    out.push({ ...base, id: `${prefix}a${i}`, role: "assistant", content: section(i) as string });
  }
  return out;
}

// The browser's clock, frames and observers, driven by the test: every reading of the clock
// moves it on by 0.5 ms, so a slice of work ends after a bounded number of steps.
let now = 0;
let frames: FrameRequestCallback[] = [];
let near: { callback: IntersectionObserverCallback; observed: Set<Element> } | null = null;

beforeEach(() => {
  now = 0;
  frames = [];
  near = null;
  vi.spyOn(performance, "now").mockImplementation(() => (now += 0.5));
  vi.stubGlobal("requestAnimationFrame", (cb: FrameRequestCallback) => frames.push(cb));
  vi.stubGlobal(
    "IntersectionObserver",
    class {
      observed = new Set<Element>();
      constructor(callback: IntersectionObserverCallback) {
        near = { callback, observed: this.observed };
      }
      observe(el: Element) {
        this.observed.add(el);
      }
      unobserve(el: Element) {
        this.observed.delete(el);
      }
      disconnect() {
        this.observed.clear();
      }
    },
  );
  vi.stubGlobal(
    "ResizeObserver",
    class {
      observe() {}
    },
  );
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

/** Renders a frame, then lets the work queued after it run. */
async function frame(): Promise<void> {
  for (const cb of frames.splice(0)) cb(now);
  await new Promise((r) => setTimeout(r, 0));
}

function view(): { chat: ChatView; list: HTMLElement } {
  const scroller = document.createElement("div");
  const list = document.createElement("div");
  scroller.append(list);
  document.body.replaceChildren(scroller);
  const chat = new ChatView({} as Api, scroller, list, document.createElement("div"), document.createElement("button"));
  return { chat, list };
}

const busy = (list: HTMLElement) => list.querySelectorAll(".msg-content[aria-busy]").length;

describe("a long branch shown", () => {
  it("shows the newest messages at once and the rest in slices, ending with every answer rendered whole", async () => {
    const { chat, list } = view();
    const messages = branch(30);
    chat.renderHistory(messages);
    // The newest messages only, the newest answer rendered, the others waiting in places of their
    // estimated height.
    expect(list.children.length).toBeLessThan(messages.length);
    const last = list.lastElementChild!.querySelector<HTMLElement>(".msg-content")!;
    expect(last.hasAttribute("aria-busy")).toBe(false);
    expect(last.innerHTML).toBe(renderMarkdownToHtml(messages[59]!.content));
    const waiting = list.querySelector<HTMLElement>(".msg-content[aria-busy]")!;
    expect(waiting.childNodes.length).toBe(0);
    expect(waiting.style.minHeight).toBe(`${estimatedHeight(section(0))}px`);

    let slices = 0;
    let shown = list.children.length;
    while (busy(list) > 0 || list.children.length < messages.length) {
      await frame();
      slices++;
      // A slice builds a few older messages at most, and does some work.
      expect(list.children.length - shown).toBeLessThanOrEqual(8);
      shown = list.children.length;
      expect(slices).toBeLessThan(1000);
    }
    // The work was spread over many slices.
    expect(slices).toBeGreaterThan(20);
    expect(frames).toHaveLength(0);
    // In order, each answer the whole render of its Markdown.
    expect([...list.children].map((el) => (el as HTMLElement).dataset.id)).toEqual(messages.map((m) => m.id));
    messages.forEach((m, i) => {
      const body = list.children[i]!.querySelector(".msg-content")!;
      if (m.role === "assistant") {
        expect(body.innerHTML, m.id).toBe(renderMarkdownToHtml(m.content));
        expect(body.hasAttribute("style")).toBe(false);
      } else expect(body.textContent).toBe(m.content);
    });
  }, 60_000);

  it("renders an answer that comes near the view before the others", async () => {
    const { chat, list } = view();
    const messages = branch(30);
    chat.renderHistory(messages);
    while (list.children.length < messages.length) await frame();
    const oldest = list.querySelector<HTMLElement>('.msg[data-id="ma0"]')!;
    expect(oldest.querySelector(".msg-content")!.hasAttribute("aria-busy")).toBe(true);
    expect(near!.observed.has(oldest)).toBe(true);
    const before = busy(list);
    // Reported in view (the observer's root bounds include its 1,600 px margin).
    const rect = (top: number, bottom: number) => ({ top, bottom }) as DOMRectReadOnly;
    near!.callback(
      [{ target: oldest, isIntersecting: true, boundingClientRect: rect(0, 500), rootBounds: rect(-1600, 2400) } as unknown as IntersectionObserverEntry],
      {} as IntersectionObserver,
    );
    for (let i = 0; i < 3 && oldest.querySelector(".msg-content[aria-busy]"); i++) await frame();
    expect(oldest.querySelector(".msg-content")!.innerHTML).toBe(renderMarkdownToHtml(section(0)));
    expect(near!.observed.has(oldest)).toBe(false);
    // Few others were rendered meanwhile: the oldest came first.
    expect(busy(list)).toBeGreaterThan(before - 4);
  }, 60_000);

  it("stops the slices of a branch no longer shown", async () => {
    const { chat, list } = view();
    chat.renderHistory(branch(30, "x"));
    await frame();
    const other = branch(12, "y");
    chat.renderHistory(other);
    for (let i = 0; i < 200 && (busy(list) > 0 || list.children.length < other.length); i++) await frame();
    expect(busy(list)).toBe(0);
    expect([...list.children].map((el) => (el as HTMLElement).dataset.id)).toEqual(other.map((m) => m.id));
    for (let i = 0; i < 5; i++) await frame();
    expect(list.children.length).toBe(other.length);
  }, 60_000);
});

describe("estimatedHeight", () => {
  it("grows with the lines of the text, long lines counting as wrapped", () => {
    expect(estimatedHeight("one line")).toBe(24);
    expect(estimatedHeight("a\nb\n\nc")).toBe(96);
    expect(estimatedHeight("x".repeat(181))).toBe(72);
  });
});
