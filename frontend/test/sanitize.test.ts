import { describe, expect, it } from "vitest";
import { isSafeUrl, sanitizeHtml } from "../src/sanitize";
import { renderMarkdownToHtml } from "../src/markdown";

/** Everything that could run script: asserts none of it survived. */
function expectInert(html: string): void {
  const div = document.createElement("div");
  div.innerHTML = html;
  expect(div.querySelectorAll("script, iframe, object, embed, form, style, svg, math, base, meta, link").length).toBe(0);
  for (const el of Array.from(div.querySelectorAll("*"))) {
    for (const attr of Array.from(el.attributes)) {
      expect(attr.name.toLowerCase().startsWith("on"), `${el.tagName} ${attr.name}`).toBe(false);
      if (["href", "src", "action", "xlink:href", "formaction"].includes(attr.name)) {
        expect(attr.value.replace(/[\s\u0000-\u001f]/g, "").toLowerCase()).not.toMatch(/^(javascript|vbscript|data:text)/);
      }
    }
  }
}

const ATTACKS = [
  "<script>window.__pwned = 1</script>",
  "<img src=x onerror=\"window.__pwned = 2\">",
  "[x](javascript:alert(1))",
  "[x](JaVaScRiPt:alert(1))",
  "[x](  javascript:alert(1))",
  "[x](java\tscript:alert(1))",
  "<a href=\"javascript:alert(1)\">click</a>",
  "<a href=\"&#106;avascript:alert(1)\">entity</a>",
  "<a href=\"jav&#x09;ascript:alert(1)\">tab entity</a>",
  "![img](javascript:alert(1))",
  "<svg onload=alert(1)><circle r=5 /></svg>",
  "<svg><script>alert(1)</script></svg>",
  "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
  "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
  "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
  "<iframe src=\"javascript:alert(1)\"></iframe>",
  "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
  "<form action=\"javascript:alert(1)\"><button>go</button></form>",
  "<details open ontoggle=alert(1)>",
  "<input autofocus onfocus=alert(1)>",
  "<object data=\"javascript:alert(1)\"></object>",
  "<embed src=\"javascript:alert(1)\">",
  "<div style=\"background:url(javascript:alert(1))\">x</div>",
  "<a href=\"data:text/html,<script>alert(1)</script>\">data</a>",
  "<base href=\"javascript:alert(1)//\">",
  "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
  "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
  "<a href=\"vbscript:msgbox(1)\">vb</a>",
  "[ref]\n\n[ref]: javascript:alert(1)",
  "<javascript:alert(1)>",
];

describe("sanitizing model output", () => {
  for (const attack of ATTACKS) {
    it(`neutralises ${JSON.stringify(attack).slice(0, 70)}`, () => {
      expectInert(renderMarkdownToHtml(attack));
      expectInert(sanitizeHtml(attack));
    });
  }

  it("drops script elements entirely, keeping neighbouring text", () => {
    const html = renderMarkdownToHtml("before <script>alert(1)</script> after");
    expect(html).not.toContain("<script");
    expect(html).toContain("before");
    expect(html).toContain("after");
  });

  it("keeps a javascript: link's text but not its href", () => {
    const html = renderMarkdownToHtml("[click me](javascript:alert(1))");
    expect(html).toContain("click me");
    expect(html).not.toMatch(/javascript:/i);
  });

  it("opens safe links in a new tab with noopener noreferrer", () => {
    const div = document.createElement("div");
    div.innerHTML = renderMarkdownToHtml("see [docs](https://example.com/x) and https://example.org");
    const links = Array.from(div.querySelectorAll("a"));
    expect(links).toHaveLength(2);
    for (const a of links) {
      expect(a.getAttribute("rel")).toBe("noopener noreferrer");
      expect(a.getAttribute("target")).toBe("_blank");
    }
  });

  it("overrides a target or rel given by the model", () => {
    const div = document.createElement("div");
    div.innerHTML = sanitizeHtml('<a href="https://e.com" target="_self" rel="opener">x</a>');
    const a = div.querySelector("a")!;
    expect(a.getAttribute("rel")).toBe("noopener noreferrer");
    expect(a.getAttribute("target")).toBe("_blank");
  });

  it("strips inline styles and id clobbering", () => {
    const html = sanitizeHtml('<p style="position:fixed" id="composer-input">x</p><img name="cookie" src="https://e.com/a.png">');
    expect(html).not.toContain("style=");
    expect(html).not.toContain('id="composer-input"');
    expect(html).not.toContain('name="cookie"');
  });

  it("keeps harmless markup", () => {
    const html = sanitizeHtml("<details><summary>More</summary><b>bold</b> <kbd>Ctrl</kbd></details>");
    expect(html).toContain("<details>");
    expect(html).toContain("<b>bold</b>");
  });
});

describe("isSafeUrl", () => {
  it("allows http(s), mailto, relative and fragment URLs", () => {
    for (const u of ["https://a.b/c", "http://a", "mailto:x@y.z", "/path", "rel/path", "#frag", "?q=1"]) {
      expect(isSafeUrl(u), u).toBe(true);
    }
  });
  it("refuses script-bearing and unknown schemes", () => {
    for (const u of ["javascript:x", " JAVASCRIPT:x", "java\nscript:x", "\u0001javascript:x", "vbscript:x", "data:text/html,x", "file:///etc/passwd"]) {
      expect(isSafeUrl(u), u).toBe(false);
    }
  });
  it("allows data images only as image sources", () => {
    expect(isSafeUrl("data:image/png;base64,AAAA", "src")).toBe(true);
    expect(isSafeUrl("data:image/png;base64,AAAA", "href")).toBe(false);
    expect(isSafeUrl("data:image/svg+xml;base64,AAAA", "src")).toBe(false);
  });
});
