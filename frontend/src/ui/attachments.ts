/**
 * Files attached to the next message: checked on the client, uploaded one by one with a progress
 * bar, then watched until the server has extracted them (`processing` → `ready` or `failed`).
 */

import type { Api, UploadHandle } from "../api";
import { describeError, toApiError } from "../errors";
import { checkFile, fileTypeLabel, formatBytes } from "../files";
import type { FileMeta, FileType } from "../types";
import { h, icon } from "./dom";

export type AttachmentState = "uploading" | "processing" | "ready" | "failed";

export interface Attachment {
  key: number;
  file: File;
  fileType: FileType;
  previewUrl: string | null;
  state: AttachmentState;
  /** Bytes sent, 0–1. */
  uploaded: number;
  /** Server-side extraction progress 0–100, when known. */
  progress: number | null;
  meta: FileMeta | null;
  error: string;
  upload: UploadHandle | null;
  pollTimer: number | undefined;
  el: HTMLElement;
}

let nextKey = 1;

export class Attachments {
  items: Attachment[] = [];

  constructor(
    private readonly api: Api,
    private readonly container: HTMLElement,
    private readonly maxBytes: () => number,
    private readonly conversationId: () => string | null,
    private readonly onChange: () => void,
    private readonly onRejected: (message: string) => void,
  ) {}

  get busy(): boolean {
    return this.items.some((a) => a.state === "uploading" || a.state === "processing");
  }

  get ready(): Attachment[] {
    return this.items.filter((a) => a.state === "ready");
  }

  add(files: File[]): void {
    const rejected: string[] = [];
    for (const file of files) {
      const check = checkFile(file, this.maxBytes());
      if (!check.ok) {
        rejected.push(check.message);
        continue;
      }
      const a: Attachment = {
        key: nextKey++,
        file,
        fileType: check.fileType,
        previewUrl: check.fileType === "image" ? URL.createObjectURL(file) : null,
        state: "uploading",
        uploaded: 0,
        progress: null,
        meta: null,
        error: "",
        upload: null,
        pollTimer: undefined,
        el: h("li", { class: "chip" }),
      };
      this.items.push(a);
      this.container.append(a.el);
      this.renderChip(a);
      this.startUpload(a);
    }
    if (rejected.length) this.onRejected(rejected.join(" "));
    this.container.hidden = this.items.length === 0;
    this.onChange();
  }

  private startUpload(a: Attachment): void {
    a.upload = this.api.uploadFile(a.file, this.conversationId(), (f) => {
      a.uploaded = f;
      this.renderChip(a);
    });
    a.upload.promise.then(
      (meta) => {
        a.upload = null;
        a.uploaded = 1;
        this.applyMeta(a, meta);
      },
      (e: unknown) => {
        a.upload = null;
        if ((e as Error).name === "AbortError") return;
        this.fail(a, describeError(toApiError(e)));
      },
    );
  }

  private applyMeta(a: Attachment, meta: FileMeta): void {
    if (!this.items.includes(a)) return;
    a.meta = meta;
    if (meta.status === "ready") {
      a.state = "ready";
      a.progress = 100;
    } else if (meta.status === "failed") {
      a.state = "failed";
      a.error = meta.error || "The file couldn't be read.";
    } else {
      a.state = "processing";
      a.progress = typeof meta.progress === "number" ? meta.progress : null;
      this.schedulePoll(a);
    }
    this.renderChip(a);
    this.onChange();
  }

  private schedulePoll(a: Attachment, attempt = 0): void {
    const delay = Math.min(3000, 500 + attempt * 250);
    a.pollTimer = window.setTimeout(async () => {
      if (!this.items.includes(a) || !a.meta) return;
      try {
        const meta = await this.api.getFile(a.meta.id);
        if (meta.status === "processing") {
          a.meta = meta;
          a.progress = typeof meta.progress === "number" ? meta.progress : a.progress;
          this.renderChip(a);
          this.schedulePoll(a, attempt + 1);
        } else {
          this.applyMeta(a, meta);
        }
      } catch (e) {
        const err = toApiError(e);
        if (err.code === "network_error" || err.status >= 500) this.schedulePoll(a, attempt + 1);
        else this.fail(a, describeError(err));
      }
    }, delay);
  }

  private fail(a: Attachment, message: string): void {
    if (!this.items.includes(a)) return;
    a.state = "failed";
    a.error = message;
    this.renderChip(a);
    this.onChange();
  }

  /** Drops an attachment; its preview URL is kept only when the message that shows it went out. */
  remove(a: Attachment, sent = false): void {
    a.upload?.abort();
    window.clearTimeout(a.pollTimer);
    this.items = this.items.filter((x) => x !== a);
    a.el.remove();
    if (a.previewUrl && !(sent && a.state === "ready")) URL.revokeObjectURL(a.previewUrl);
    this.container.hidden = this.items.length === 0;
    this.onChange();
  }

  /** Removes everything after the message went out with the ready ones. */
  clearSent(): void {
    for (const a of [...this.items]) this.remove(a, true);
  }

  private renderChip(a: Attachment): void {
    const name = a.file.name;
    const kind = `${fileTypeLabel(a.fileType)} · ${formatBytes(a.file.size)}`;
    let statusText = "";
    let bar: HTMLElement | null = null;
    if (a.state === "uploading") {
      const pct = Math.round(a.uploaded * 100);
      statusText = `Uploading ${pct}%`;
      bar = h("progress", { class: "chip-progress", max: 100, value: pct, "aria-label": `Upload of ${name}` });
    } else if (a.state === "processing") {
      statusText = a.progress != null ? `Reading ${Math.round(a.progress)}%` : "Reading…";
      bar = h("progress", { class: "chip-progress", max: 100, "aria-label": `Reading ${name}` });
      if (a.progress != null) bar.setAttribute("value", String(Math.round(a.progress)));
    } else if (a.state === "ready") {
      const m = a.meta;
      statusText = m?.pages ? `Ready · ${m.pages} page${m.pages === 1 ? "" : "s"}` : "Ready";
    } else {
      statusText = `Failed: ${a.error}`;
    }
    const thumb = a.previewUrl
      ? h("img", { class: "chip-thumb", src: a.previewUrl, alt: "" })
      : h("span", { class: `chip-icon ft-${a.fileType}`, "aria-hidden": "true", text: fileTypeLabel(a.fileType).slice(0, 4) });
    const remove = h(
      "button",
      { type: "button", class: "icon-btn chip-remove", "aria-label": `Remove ${name}` },
      icon("close"),
    );
    remove.addEventListener("click", () => this.remove(a));
    a.el.className = `chip chip-${a.state}`;
    a.el.dataset.state = a.state;
    a.el.replaceChildren(
      thumb,
      h(
        "div",
        { class: "chip-body" },
        h("span", { class: "chip-name", title: name, text: name }),
        h("span", { class: "chip-meta", text: kind }),
        h("span", { class: "chip-status", role: a.state === "failed" ? "alert" : null, text: statusText }),
        bar,
      ),
      remove,
    );
  }
}
