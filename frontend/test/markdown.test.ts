import { beforeAll, describe, expect, it } from "vitest";
import { loadKatex, renderMarkdownToHtml } from "../src/markdown";

beforeAll(() => loadKatex());

function dom(md: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = renderMarkdownToHtml(md);
  return div;
}

describe("Markdown rendering", () => {
  it("renders GFM tables", () => {
    const d = dom("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n");
    expect(d.querySelectorAll("table th")).toHaveLength(2);
    expect(d.querySelectorAll("table tbody tr")).toHaveLength(2);
    expect(d.querySelector("td")!.textContent).toBe("1");
  });

  it("renders ordered, unordered and task lists", () => {
    const d = dom("1. one\n2. two\n\n- x\n- y\n\n- [x] done\n- [ ] todo\n");
    expect(d.querySelectorAll("ol li")).toHaveLength(2);
    expect(d.querySelectorAll("ul li").length).toBeGreaterThanOrEqual(4);
  });

  it("renders emphasis, inline code, strikethrough, headings and quotes", () => {
    const d = dom("# Title\n\n**bold** _it_ `code` ~~gone~~\n\n> quoted");
    expect(d.querySelector("h1")!.textContent).toBe("Title");
    expect(d.querySelector("strong")!.textContent).toBe("bold");
    expect(d.querySelector("em")!.textContent).toBe("it");
    expect(d.querySelector("code")!.textContent).toBe("code");
    expect(d.querySelector("del")!.textContent).toBe("gone");
    expect(d.querySelector("blockquote")).not.toBeNull();
  });

  it("highlights fenced code and adds a copy button", () => {
    const d = dom("```rust\nfn main() { let x = 1; }\n```");
    const block = d.querySelector(".code-block")!;
    expect(block.querySelector(".code-lang")!.textContent).toBe("rust");
    expect(block.querySelector("button.copy-code")).not.toBeNull();
    const code = block.querySelector("pre code")!;
    expect(code.className).toContain("language-rust");
    expect(code.querySelector(".hljs-keyword")).not.toBeNull();
    expect(code.textContent).toBe("fn main() { let x = 1; }");
  });

  it("escapes code in unknown languages", () => {
    const d = dom("```weird<lang>\n<script>alert(1)</script>\n```");
    expect(d.querySelector("script")).toBeNull();
    expect(d.querySelector("pre code")!.textContent).toContain("<script>alert(1)</script>");
  });

  it("renders an unterminated fence while streaming", () => {
    const d = dom("Here:\n```python\nprint('hi')");
    expect(d.querySelector("pre code")!.textContent).toContain("print('hi')");
  });

  it("typesets inline and display math with KaTeX", () => {
    const d = dom("Euler: $e^{i\\pi} + 1 = 0$\n\n$$\n\\int_0^1 x^2\\,dx = \\frac13\n$$\n");
    expect(d.querySelectorAll(".math-inline .katex")).toHaveLength(1);
    expect(d.querySelectorAll(".math-display .katex-display")).toHaveLength(1);
    expect(d.querySelector(".math-inline annotation")!.textContent).toBe("e^{i\\pi} + 1 = 0");
  });

  it("supports \\( \\) and \\[ \\] delimiters", () => {
    const d = dom("inline \\(a^2\\) and\n\n\\[b^2\\]\n");
    expect(d.querySelectorAll(".math-inline .katex")).toHaveLength(1);
    expect(d.querySelectorAll(".math-display .katex")).toHaveLength(1);
  });

  it("leaves currency amounts alone", () => {
    const d = dom("It costs $5 and $10 today.");
    expect(d.querySelector(".math")).toBeNull();
    expect(d.textContent).toContain("$5 and $10");
  });

  it("does not typeset math inside code", () => {
    const d = dom("`$x$` and\n\n```\n$y$\n```");
    expect(d.querySelector(".katex")).toBeNull();
  });

  it("shows broken TeX as an error instead of throwing", () => {
    const d = dom("$\\frac{$ and $x$");
    expect(d.textContent).toContain("x");
  });

  it("does not let TeX \\href produce javascript links", () => {
    const d = dom("$\\href{javascript:alert(1)}{click}$");
    for (const a of Array.from(d.querySelectorAll("a"))) {
      expect(a.getAttribute("href") ?? "").not.toMatch(/javascript/i);
    }
  });

  it("keeps text as text", () => {
    const d = dom("1 < 2 && 3 > 2");
    expect(d.textContent!.trim()).toBe("1 < 2 && 3 > 2");
  });
});
