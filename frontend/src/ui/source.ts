/**
 * The source viewer: a citation opens the cited file's extracted text at its page (or sheet),
 * with the cited snippet highlighted and scrolled into view.
 */

import type { Api } from "../api";
import { citationPlace, findSnippet, sectionOf } from "../citations";
import { describeError, toApiError } from "../errors";
import type { Citation } from "../types";
import { $, h } from "./dom";

export class SourceViewer {
  private readonly dialog = $("source-dialog") as HTMLDialogElement;
  /** The latest request; an older one that lands late is dropped. */
  private seq = 0;

  constructor(private readonly api: Api) {
    $("source-close").addEventListener("click", () => this.dialog.close());
  }

  async open(c: Citation): Promise<void> {
    const fileId = c.file_id;
    if (fileId == null) return;
    const seq = ++this.seq;
    const heading = $("source-heading");
    const place = $("source-place");
    const body = $("source-text");
    const error = $("source-error");
    heading.textContent = c.filename ?? "";
    place.textContent = `Source ${c.n}: ${citationPlace(c)}`;
    body.replaceChildren(h("p", { class: "source-loading", text: "Loading…" }));
    error.hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    let text: string;
    try {
      text = (await this.api.fileText(fileId)).text;
    } catch (e) {
      if (seq !== this.seq) return;
      body.replaceChildren();
      error.textContent = `Couldn't load ${c.filename ?? "the file"}. ${describeError(toApiError(e))}`;
      error.hidden = false;
      return;
    }
    if (seq !== this.seq) return;
    const section = sectionOf(text, c);
    const at = findSnippet(section.text, c.snippet);
    const pre = h("div", { class: "source-page", "data-label": section.label || null });
    if (at) {
      const mark = h("mark", { class: "source-snippet", text: section.text.slice(at[0], at[1]) });
      pre.append(section.text.slice(0, at[0]), mark, section.text.slice(at[1]));
      body.replaceChildren(pre);
      mark.scrollIntoView({ block: "center" });
    } else {
      pre.append(section.text);
      body.replaceChildren(
        h("p", { class: "source-note", role: "status", text: "The cited passage could not be found in this text to highlight." }),
        pre,
      );
    }
  }
}
