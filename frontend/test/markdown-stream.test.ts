import { beforeAll, describe, expect, it } from "vitest";
import { MarkdownSteps, MarkdownStream, loadKatex, renderMarkdownToHtml } from "../src/markdown";
// @ts-expect-error: a JavaScript module of the benchmark, without types.
import { section } from "../bench/answer.mjs";

beforeAll(() => loadKatex());

/** Streams `src` into a fresh element, cut at `cuts` (offsets), and finishes it. */
function streamed(src: string, cuts: number[]): { html: string; partials: string[] } {
  const div = document.createElement("div");
  const md = new MarkdownStream(div);
  const partials: string[] = [];
  for (const at of cuts) {
    md.update(src.slice(0, at));
    partials.push(div.innerHTML);
  }
  md.finish(src);
  return { html: div.innerHTML, partials };
}

/** Every offset of `src`. */
const everyOffset = (src: string) => Array.from({ length: src.length }, (_, i) => i + 1);

/** The offsets where a cut is most likely to matter: around every line break, and every 9th. */
const cutPoints = (src: string) =>
  everyOffset(src).filter((i) => i % 9 === 0 || src[i - 1] === "\n" || src[i] === "\n");

const DOCS: Record<string, string> = {
  headingsAndParagraphs: "# Title\n\nSome **bold** text and `code`.\n\n## Part 2\n\nMore text\nover two lines.\n\nSetext\n===\n\nLast.",
  fencedCode:
    "Before.\n\n```rust\nfn main() {\n\n    println!(\"hi\");\n\n}\n```\n\nBetween.\n\n~~~\nplain\n\n~~~\n\n````md\n```\nnested\n```\n````\nAfter.\n",
  lists:
    "- one\n- two\n\n- three after a blank line\n\n  continued inside the item\n\n1. first\n2. second\n   - nested\n\n     loose\n3. third\n\nText.\n\n- [x] done\n- [ ] todo\n",
  tables:
    "| Region | Revenue | Growth |\n|---|---:|:---:|\n| North | 1.2 | 12% |\n| South | 0.9 | 8% |\n\nAfter the table.\n\n| a |\n|---|\n| x |\ncontinues as a row\n\nEnd.",
  math:
    "Inline $a^2 + b^2 = c^2$ and \\(x\\).\n\n$$\nR = \\sum_{q=1}^{4} r_q\n\n+ 1\n$$\n\nThen \\[\n\\int_0^1 x\\,dx\n\\]\n\nText\n$$x$$\n\nCosts $5 and $10.\n\n$$\na\n$$\n",
  quotesAndRules: "> quoted\nlazy line\n\n> second\n\n---\n\n***\n\nText\n---\n\n    indented code\n\n    more\n\nDone.",
  citations: "The launch code is ZEBRA-1 [1]. In code: `arr[1]`.\n\nSee [2, 3] and [1][3].\n\n- item [2]\n",
  unclosed: "Text\n\n```python\nprint(1)\n\nstill code",
  unclosedMath: "Text\n\n$$\nx\n\ny",
};

describe("MarkdownStream", () => {
  for (const [name, src] of Object.entries(DOCS)) {
    it(`ends with the whole render at every cut point: ${name}`, () => {
      const whole = renderMarkdownToHtml(src);
      for (const at of cutPoints(src)) {
        expect(streamed(src, [at]).html, `cut at ${at}`).toBe(whole);
      }
      // Streamed a few characters at a time, as a model writes it.
      const steps = everyOffset(src).filter((i) => i % 3 === 0);
      expect(streamed(src, steps).html).toBe(whole);
      expect(streamed(src, everyOffset(src).filter((i) => i % 2 === 0)).html).toBe(whole);
    }, 60_000);
  }

  it("shows every prefix as the whole render of that prefix", () => {
    const src = DOCS.fencedCode! + DOCS.lists! + DOCS.tables! + DOCS.math!;
    const cuts = everyOffset(src).filter((i) => i % 11 === 0);
    const { partials } = streamed(src, cuts);
    cuts.forEach((at, i) => expect(partials[i], `prefix of ${at}`).toBe(renderMarkdownToHtml(src.slice(0, at))));
  }, 60_000);

  it("keeps the DOM of finished blocks while the text grows", () => {
    const div = document.createElement("div");
    const md = new MarkdownStream(div);
    md.update("# Title\n\n```js\nlet a = 1;\n```\n\nA paragraph");
    const heading = div.querySelector("h1");
    const code = div.querySelector(".code-block");
    md.update("# Title\n\n```js\nlet a = 1;\n```\n\nA paragraph that grows\n\n- and a list");
    expect(div.querySelector("h1")).toBe(heading);
    expect(div.querySelector(".code-block")).toBe(code);
    expect(div.querySelector("li")!.textContent).toBe("and a list");
  });

  it("keeps the last block's DOM when the text added changes nothing shown", () => {
    const div = document.createElement("div");
    const md = new MarkdownStream(div);
    md.update("Intro.\n\nA paragraph with **bold**");
    const last = div.querySelector("p:last-of-type");
    md.update("Intro.\n\nA paragraph with **bold**\n");
    expect(div.querySelector("p:last-of-type")).toBe(last);
    md.update("Intro.\n\nA paragraph with **bold** and more");
    expect(div.querySelector("p:last-of-type")).not.toBe(last);
    expect(div.querySelector("p:last-of-type")!.textContent).toBe("A paragraph with bold and more");
  });

  it("holds back a block that opens $$ until the formula closes", () => {
    const div = document.createElement("div");
    const md = new MarkdownStream(div);
    md.update("Intro\n\n$$\nx\n\nnot yet closed\n\nmore");
    md.update("Intro\n\n$$\nx\n\nnot yet closed\n\nmore\n$$\n\nafter");
    expect(div.querySelectorAll(".math-display")).toHaveLength(1);
    expect(div.innerHTML).toBe(renderMarkdownToHtml("Intro\n\n$$\nx\n\nnot yet closed\n\nmore\n$$\n\nafter"));
  });

  it("renders the whole text again when a link definition comes after its use", () => {
    const src = "See [the docs][d] first.\n\nThen more text.\n\n[d]: https://example.com/docs\n";
    const cuts = everyOffset(src);
    const { html } = streamed(src, cuts);
    expect(html).toBe(renderMarkdownToHtml(src));
    const div = document.createElement("div");
    div.innerHTML = html;
    expect(div.querySelector("a")!.getAttribute("href")).toBe("https://example.com/docs");
  });

  it("renders the whole text again when raw HTML reaches across blocks", () => {
    const src = "<div>\n\n**inside**\n\n</div>\n\nText with <b>bold\n\nnext paragraph";
    expect(streamed(src, everyOffset(src)).html).toBe(renderMarkdownToHtml(src));
  });

  it("starts again when the text is replaced rather than extended", () => {
    const div = document.createElement("div");
    const md = new MarkdownStream(div);
    md.update("# One\n\nfirst answer\n\nmore");
    md.finish("Something else entirely");
    expect(div.innerHTML).toBe(renderMarkdownToHtml("Something else entirely"));
  });
});

describe("MarkdownSteps", () => {
  /** Renders `src` a step at a time; returns the result and how many steps it took. */
  function stepped(src: string): { html: string; steps: number } {
    const md = new MarkdownSteps(src);
    let steps = 1;
    while (md.step()) steps++;
    const root = document.createElement("div");
    root.append(document.createElement("span"));
    md.finishInto(root);
    return { html: root.innerHTML, steps };
  }

  for (const [name, src] of Object.entries(DOCS)) {
    it(`ends with the whole render: ${name}`, () => {
      expect(stepped(src).html).toBe(renderMarkdownToHtml(src));
    });
  }

  it("renders an answer of the benchmark as a whole, one top-level block per step", () => {
    const src = section(3) + section(4);
    const { html, steps } = stepped(src);
    expect(html).toBe(renderMarkdownToHtml(src));
    const div = document.createElement("div");
    div.innerHTML = html;
    // Each step rendered one of the top-level blocks (a code block is wrapped with its toolbar).
    expect(steps).toBe(div.children.length);
    expect(steps).toBeGreaterThan(5);
  });

  it("renders nothing before the first step, and then one block", () => {
    const md = new MarkdownSteps("# One\n\nTwo\n\n- three\n");
    expect(md.done.childElementCount).toBe(0);
    expect(md.step()).toBe(true);
    expect(md.done.querySelector("h1")!.textContent).toBe("One");
    expect(md.done.childElementCount).toBe(1);
  });

  it("renders the whole text in one step when blocks reach across each other", () => {
    for (const src of [
      "See [the docs][d] first.\n\nThen more text.\n\n[d]: https://example.com/docs\n",
      "<div>\n\n**inside**\n\n</div>\n\nText with <b>bold\n\nnext paragraph",
    ]) {
      const md = new MarkdownSteps(src);
      expect(md.step()).toBe(false);
      expect(stepped(src).html).toBe(renderMarkdownToHtml(src));
    }
  });
});
