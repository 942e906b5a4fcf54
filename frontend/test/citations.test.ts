import { describe, expect, it } from "vitest";
import { findSnippet, linkCitations, opensConversation, sectionOf, sections } from "../src/citations";
import { renderMarkdown } from "../src/markdown";
import type { Citation } from "../src/types";

const cite = (n: number, page: number | null = null): Citation => ({
  n,
  file_id: `f${n}`,
  filename: "report.pdf",
  page,
  sheet: null,
  snippet: "The canary sings.",
});

function rendered(md: string, citations: Citation[]): HTMLElement {
  const div = document.createElement("div");
  div.append(renderMarkdown(md));
  linkCitations(div, citations);
  return div;
}

describe("citation links", () => {
  it("links the markers the answer's citations carry, after Markdown", () => {
    const d = rendered("It **sings** [2]. Both [1][2] and [1, 3].", [cite(1, 7), cite(2)]);
    const links = Array.from(d.querySelectorAll<HTMLAnchorElement>("a.cite"));
    expect(links.map((a) => a.dataset.n)).toEqual(["2", "1", "2", "1"]);
    expect(links[1]!.getAttribute("aria-label")).toBe("Source 1: report.pdf, page 7");
    // [3] is no passage: it stays text inside its group.
    expect(d.textContent!.trim()).toBe("It sings [2]. Both [1][2] and [1, 3].");
  });

  it("leaves code, links and unknown numbers alone", () => {
    const d = rendered("`v[1]` and\n\n```\nx[1]\n```\n\n[see](https://example.com) [1] [9]", [cite(1)]);
    expect(d.querySelectorAll("a.cite")).toHaveLength(1);
    expect(d.querySelector("code")!.textContent).toBe("v[1]");
    expect(d.querySelector("pre a.cite")).toBeNull();
    expect(d.textContent).toContain("[9]");
  });

  it("links a memory citation to its conversation, labelled as memory", () => {
    const message: Citation = {
      n: 2,
      file_id: null,
      filename: null,
      page: null,
      sheet: null,
      snippet: "The gate code is 4417.",
      memory: { conversation_id: "c-a/1", message_id: "m-a", title: "Moving house" },
    };
    const file: Citation = {
      ...cite(3, 7),
      memory: { conversation_id: "c-b", message_id: null, title: "Lease" },
    };
    const d = rendered("The code is 4417 [2], rent is monthly [3] and more [1].", [cite(1), message, file]);
    const links = Array.from(d.querySelectorAll<HTMLAnchorElement>("a.cite"));
    expect(links.map((a) => a.dataset.n)).toEqual(["2", "3", "1"]);
    const [m, f, plain] = links as [HTMLAnchorElement, HTMLAnchorElement, HTMLAnchorElement];
    expect(m.classList.contains("cite-memory")).toBe(true);
    expect(m.getAttribute("href")).toBe("#/c/c-a%2F1");
    expect(m.getAttribute("aria-label")).toBe("Source 2: memory, from your conversation “Moving house”");
    expect(opensConversation(message)).toBe(true);
    // A file of another conversation: the link names both, and opens the file's page viewer.
    expect(f.classList.contains("cite-memory")).toBe(true);
    expect(f.getAttribute("href")).toBe("#/c/c-b");
    expect(f.getAttribute("aria-label")).toBe("Source 3: report.pdf, page 7 (memory, from your conversation “Lease”)");
    expect(opensConversation(file)).toBe(false);
    // This conversation's file is as before.
    expect(plain.classList.contains("cite-memory")).toBe(false);
    expect(plain.getAttribute("href")).toBe("#");
    expect(opensConversation(cite(1))).toBe(false);
  });

  it("does nothing without citations", () => {
    const d = rendered("Plain [1].", []);
    expect(d.querySelector("a.cite")).toBeNull();
  });
});

describe("the cited page", () => {
  const text = "[page 1]\nIntro.\n[page 7]\nThe launch code is\nZEBRA-7731 today.\n[page 8]\nEnd.\n";

  it("cuts the text at its page and sheet markers", () => {
    expect(sections(text).map((s) => s.label)).toEqual(["page 1", "page 7", "page 8"]);
    const book = sections("## Sheet: Revenue\n| a |\n## Sheet: Costs\n| b |\n");
    expect(book.map((s) => s.sheet)).toEqual(["Revenue", "Costs"]);
    expect(sectionOf(text, { page: 7, sheet: null }).text).toBe("The launch code is\nZEBRA-7731 today.\n");
    expect(sectionOf("no pages", { page: null, sheet: null }).text).toBe("no pages");
  });

  it("finds the snippet across line breaks", () => {
    const page = sectionOf(text, { page: 7, sheet: null }).text;
    const at = findSnippet(page, "The launch code is ZEBRA-7731 today.")!;
    expect(page.slice(at[0], at[1])).toBe("The launch code is\nZEBRA-7731 today.");
    expect(findSnippet(page, "not (there)")).toBeNull();
    expect(findSnippet(page, "  ")).toBeNull();
  });
});
