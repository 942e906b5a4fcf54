import { describe, expect, it } from "vitest";
import { checkFile, detectFileType, extensionOf, formatBytes } from "../src/files";

const MB = 1024 * 1024;

describe("file checks", () => {
  it("recognises every supported type by extension", () => {
    const cases: Record<string, string> = {
      "a.pdf": "pdf", "b.DOCX": "docx", "c.xlsx": "xlsx", "d.xls": "xls", "e.ods": "ods",
      "f.csv": "csv", "g.txt": "text", "h.md": "text", "i.json": "json", "j.png": "image",
      "k.JPG": "image", "l.jpeg": "image", "m.webp": "image", "n.gif": "image",
    };
    for (const [name, type] of Object.entries(cases)) expect(detectFileType(name, ""), name).toBe(type);
  });

  it("falls back to the MIME type when the name has no extension", () => {
    expect(detectFileType("clipboard", "image/png")).toBe("image");
    expect(detectFileType("report", "application/pdf")).toBe("pdf");
    expect(detectFileType("notes", "text/plain; charset=utf-8")).toBe("text");
  });

  it("refuses unsupported types with a plain message", () => {
    for (const name of ["a.exe", "b.zip", "c.doc", "d.pptx", "e.svg", "noext"]) {
      const r = checkFile({ name, type: "", size: 10 }, 10 * MB);
      expect(r.ok, name).toBe(false);
      if (!r.ok) {
        expect(r.code).toBe("unsupported_media_type");
        expect(r.message).toContain(name);
      }
    }
  });

  it("refuses files over the limit and accepts files at the limit", () => {
    const over = checkFile({ name: "big.pdf", type: "application/pdf", size: 10 * MB + 1 }, 10 * MB);
    expect(over.ok).toBe(false);
    if (!over.ok) {
      expect(over.code).toBe("payload_too_large");
      expect(over.message).toBe("big.pdf is 10 MB; the limit is 10 MB.");
    }
    expect(checkFile({ name: "ok.pdf", type: "", size: 10 * MB }, 10 * MB)).toEqual({ ok: true, fileType: "pdf" });
  });

  it("uses the configured limit", () => {
    expect(checkFile({ name: "a.csv", type: "", size: 2000 }, 1000).ok).toBe(false);
  });

  it("refuses empty files", () => {
    expect(checkFile({ name: "a.txt", type: "", size: 0 }, 100).ok).toBe(false);
  });

  it("extracts extensions", () => {
    expect(extensionOf("a.tar.gz")).toBe("gz");
    expect(extensionOf(".hidden")).toBe("");
    expect(extensionOf("trailing.")).toBe("");
  });

  it("formats sizes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(10 * MB)).toBe("10 MB");
    expect(formatBytes(14.2 * MB)).toBe("14.2 MB");
    expect(formatBytes(250 * 1024)).toBe("250 KB");
  });
});
