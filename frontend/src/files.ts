/** Client-side checks that mirror the server's upload rules, and small formatting helpers. */

import type { FileType } from "./types";

const EXTENSIONS: Record<string, FileType> = {
  pdf: "pdf",
  docx: "docx",
  xlsx: "xlsx",
  xls: "xls",
  ods: "ods",
  csv: "csv",
  txt: "text",
  md: "text",
  markdown: "text",
  json: "json",
  png: "image",
  jpg: "image",
  jpeg: "image",
  webp: "image",
  gif: "image",
};

const MIME_TYPES: Record<string, FileType> = {
  "application/pdf": "pdf",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
  "application/vnd.ms-excel": "xls",
  "application/vnd.oasis.opendocument.spreadsheet": "ods",
  "text/csv": "csv",
  "text/plain": "text",
  "text/markdown": "text",
  "application/json": "json",
  "image/png": "image",
  "image/jpeg": "image",
  "image/webp": "image",
  "image/gif": "image",
};

/** What the file picker offers. */
export const ACCEPT_ATTR = [
  ...Object.keys(EXTENSIONS).map((e) => "." + e),
  ...Object.keys(MIME_TYPES),
].join(",");

export function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 && dot < name.length - 1 ? name.slice(dot + 1).toLowerCase() : "";
}

/** The file family from the name's extension, else from the browser-reported type; null if unsupported. */
export function detectFileType(name: string, mime: string): FileType | null {
  const ext = extensionOf(name);
  if (ext && EXTENSIONS[ext]) return EXTENSIONS[ext];
  const m = mime.split(";")[0]!.trim().toLowerCase();
  return MIME_TYPES[m] ?? null;
}

export type FileCheck = { ok: true; fileType: FileType } | { ok: false; code: string; message: string };

/** The same refusals the server would give, before any byte is sent. */
export function checkFile(file: { name: string; type: string; size: number }, maxBytes: number): FileCheck {
  const fileType = detectFileType(file.name, file.type);
  if (!fileType) {
    return {
      ok: false,
      code: "unsupported_media_type",
      message: `${file.name}: this file type isn't supported. Use PDF, Word (.docx), Excel (.xlsx, .xls), OpenDocument (.ods), CSV, text, Markdown, JSON or an image (PNG, JPEG, WebP, GIF).`,
    };
  }
  if (file.size > maxBytes) {
    return {
      ok: false,
      code: "payload_too_large",
      message: `${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}.`,
    };
  }
  if (file.size === 0) {
    return { ok: false, code: "bad_request", message: `${file.name} is empty.` };
  }
  return { ok: true, fileType };
}

/** 1536 → "1.5 KB"; 10485760 → "10 MB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const s = v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, "");
  return `${s} ${units[u]}`;
}

const LABELS: Record<FileType, string> = {
  pdf: "PDF",
  docx: "Word",
  xlsx: "Excel",
  xls: "Excel",
  ods: "Spreadsheet",
  csv: "CSV",
  text: "Text",
  json: "JSON",
  image: "Image",
};

export function fileTypeLabel(t: FileType | string): string {
  return (LABELS as Record<string, string>)[t] ?? t.toUpperCase();
}

/** A name for a pasted image, which browsers often call "image.png". */
export function namePastedFile(file: File, index: number): File {
  if (file.name && file.name !== "image.png") return file;
  const ext = file.type.split("/")[1]?.replace("jpeg", "jpg") || "png";
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  return new File([file], `pasted-${stamp}${index ? "-" + index : ""}.${ext}`, { type: file.type });
}
