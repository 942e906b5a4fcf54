/**
 * The conversation list: newest first, more pages on scroll, search, inline rename, delete with
 * confirmation, live titles, and which conversations are being answered right now (looked at
 * again every few seconds while any is).
 */

import type { Api } from "../api";
import { describeError, toApiError } from "../errors";
import { CursorPager } from "../pagination";
import { hashForConversation } from "../router";
import type { Conversation, SearchHit } from "../types";
import { h, icon } from "./dom";

const PAGE_SIZE = 30;
/** Messages and file passages shown for a search. */
const HIT_LIMIT = 8;
/** How often conversations being answered are looked at again. */
const GENERATING_POLL_MS = 3000;

export interface SidebarEvents {
  /** The open conversation was deleted. */
  onDeleted(id: string): void;
  /** A conversation was renamed (to update the header). */
  onRenamed(conv: Conversation): void;
  /** A conversation link was followed (closes the drawer on small screens). */
  onNavigate(): void;
}

/** Marks an item whose conversation is being answered. */
function showGenerating(li: HTMLElement, on: boolean): void {
  li.classList.toggle("generating", on);
  const mark = li.querySelector(".conv-generating");
  if (on && !mark) {
    li.querySelector(".conv-link")?.append(
      h("span", { class: "conv-generating", role: "img", "aria-label": "Answering now", title: "Answering now" }),
    );
  } else if (!on) {
    mark?.remove();
  }
}

/** Names the item's controls after its current title. */
function labelItem(li: HTMLElement, title: string): void {
  li.querySelector(".conv-link")?.setAttribute("title", title);
  li.querySelector(".conv-rename")?.setAttribute("aria-label", `Rename “${title}”`);
  li.querySelector(".conv-delete")?.setAttribute("aria-label", `Delete “${title}”`);
}

export class Sidebar {
  private pager: CursorPager<Conversation>;
  private query = "";
  private activeId: string | null = null;
  private searchTimer: number | undefined;
  private observer: IntersectionObserver | null = null;
  private errorText = "";
  private watchTimer: number | undefined;
  private hitsAbort: AbortController | null = null;

  constructor(
    private readonly api: Api,
    private readonly list: HTMLUListElement,
    private readonly sentinel: HTMLElement,
    private readonly status: HTMLElement,
    private readonly scroller: HTMLElement,
    private readonly search: HTMLInputElement,
    private readonly dialog: HTMLDialogElement,
    private readonly events: SidebarEvents,
  ) {
    this.pager = this.makePager();
    search.addEventListener("input", () => {
      window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => this.setQuery(search.value), 250);
    });
    search.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && search.value) {
        e.stopPropagation();
        search.value = "";
        this.setQuery("");
      }
    });
    if ("IntersectionObserver" in window) {
      this.observer = new IntersectionObserver(
        (entries) => {
          if (entries.some((e) => e.isIntersecting)) void this.loadMore();
        },
        { root: scroller, rootMargin: "200px" },
      );
      this.observer.observe(sentinel);
    }
  }

  private makePager(): CursorPager<Conversation> {
    return new CursorPager<Conversation>((cursor, signal) =>
      this.api.listConversations({ limit: PAGE_SIZE, cursor, q: this.query }, signal),
    );
  }

  /** Loads the first page again (after start, or when the server comes back). */
  async reload(): Promise<void> {
    this.pager.reset();
    this.render();
    await this.loadMore();
  }

  private setQuery(q: string): void {
    const next = q.trim();
    if (next === this.query) return;
    this.query = next;
    void this.reload();
    void this.loadHits();
  }

  /** The messages and file passages that match the query (by meaning and by words), each a link
   * to its conversation. Hidden when there is no query, no hit, or search is not available. */
  private async loadHits(): Promise<void> {
    this.hitsAbort?.abort();
    const section = document.getElementById("search-hits");
    const list = document.getElementById("search-hit-list");
    if (!section || !list) return;
    const q = this.query;
    if (!q) {
      section.hidden = true;
      list.replaceChildren();
      return;
    }
    const abort = new AbortController();
    this.hitsAbort = abort;
    let hits: SearchHit[];
    try {
      hits = (await this.api.search(q, HIT_LIMIT, abort.signal)).items;
    } catch {
      // Search by meaning is an extra: the title filter above still works.
      if (!abort.signal.aborted) section.hidden = true;
      return;
    }
    if (abort.signal.aborted || q !== this.query) return;
    const items = hits
      .filter((hit) => hit.conversation_id)
      .map((hit) => {
        const link = h(
          "a",
          { class: "search-hit-link", href: hashForConversation(hit.conversation_id!) },
          h("span", { class: "search-hit-title", text: hit.kind === "file" ? `File in “${hit.title}”` : hit.title }),
          h("span", { class: "search-hit-snippet", text: hit.snippet }),
        );
        link.addEventListener("click", () => this.events.onNavigate());
        return h("li", { class: "search-hit" }, link);
      });
    list.replaceChildren(...items);
    section.hidden = items.length === 0;
  }

  async loadMore(): Promise<void> {
    if (!this.pager.hasMore || this.pager.loading) return;
    this.errorText = "";
    this.renderStatus();
    try {
      await this.pager.loadMore();
      this.render();
    } catch (e) {
      if ((e as Error).name === "AbortError") return;
      this.errorText = `Couldn't load conversations. ${describeError(toApiError(e))}`;
      this.renderStatus();
      return;
    }
    // A short page may leave the sentinel in view: keep filling.
    if (this.pager.hasMore && this.sentinelVisible()) void this.loadMore();
  }

  private sentinelVisible(): boolean {
    const r = this.sentinel.getBoundingClientRect();
    const s = this.scroller.getBoundingClientRect();
    return r.top <= s.bottom + 200;
  }

  setActive(id: string | null): void {
    this.activeId = id;
    for (const li of Array.from(this.list.children) as HTMLElement[]) {
      const a = li.querySelector("a.conv-link");
      if (li.dataset.id === id) a?.setAttribute("aria-current", "page");
      else a?.removeAttribute("aria-current");
      li.classList.toggle("active", li.dataset.id === id);
    }
  }

  /** A conversation created or updated: put it first (not while a search hides it). */
  upsertFirst(conv: Conversation): void {
    if (this.query && !conv.title.toLowerCase().includes(this.query.toLowerCase())) {
      this.pager.update(conv);
    } else {
      this.pager.upsertFirst(conv);
    }
    this.render();
  }

  /** The automatic title arrived. */
  setTitle(id: string, title: string): void {
    const c = this.pager.items.find((x) => x.id === id);
    if (!c) return;
    if (c.title === title) return;
    this.pager.update({ ...c, title });
    const li = this.list.querySelector<HTMLElement>(`li[data-id="${CSS.escape(id)}"]`);
    const link = li?.querySelector<HTMLElement>(".conv-link .conv-title");
    if (li && link) {
      link.textContent = title;
      labelItem(li, title);
      li.classList.add("title-flash");
    } else {
      this.render();
    }
  }

  /** A conversation started (or finished) answering. */
  setGenerating(id: string, answerId: string | null): void {
    const c = this.pager.items.find((x) => x.id === id);
    if (!c || (c.generating_message_id ?? null) === answerId) return;
    this.pager.update({ ...c, generating_message_id: answerId });
    this.render();
  }

  /** While a conversation listed is being answered, reads it again every few seconds. */
  private watchGenerating(): void {
    const busy = this.pager.items.filter((c) => c.generating_message_id);
    if (busy.length === 0 || this.watchTimer !== undefined) return;
    this.watchTimer = window.setTimeout(async () => {
      this.watchTimer = undefined;
      for (const c of this.pager.items.filter((x) => x.generating_message_id)) {
        try {
          const fresh = await this.api.getConversation(c.id);
          const now = this.pager.items.find((x) => x.id === c.id);
          if (now) this.pager.update({ ...now, generating_message_id: fresh.generating_message_id ?? null, title: fresh.title });
        } catch {
          // Gone or unreachable: the next reload says.
        }
      }
      this.render();
    }, GENERATING_POLL_MS);
  }

  titleOf(id: string): string | undefined {
    return this.pager.items.find((x) => x.id === id)?.title;
  }

  private renderStatus(): void {
    let text = "";
    if (this.errorText) text = this.errorText;
    else if (this.pager.loading) text = "Loading…";
    else if (this.pager.items.length === 0)
      text = this.query ? `No conversations match “${this.query}”.` : "No conversations yet.";
    this.status.textContent = text;
    this.status.classList.toggle("error", !!this.errorText);
  }

  render(): void {
    const existing = new Map<string, HTMLElement>();
    for (const li of Array.from(this.list.children) as HTMLElement[]) {
      if (li.dataset.id) existing.set(li.dataset.id, li);
    }
    const nodes: HTMLElement[] = [];
    for (const c of this.pager.items) {
      let li = existing.get(c.id);
      if (li && li.dataset.editing !== "1") {
        const t = li.querySelector<HTMLElement>(".conv-title");
        if (t && t.textContent !== c.title) t.textContent = c.title;
        labelItem(li, c.title);
      } else if (!li) {
        li = this.item(c);
      }
      showGenerating(li, !!c.generating_message_id);
      nodes.push(li);
    }
    // Only touch the DOM when the order changed, so focus stays where it is.
    const current = Array.from(this.list.children);
    if (current.length !== nodes.length || current.some((n, i) => n !== nodes[i])) {
      this.list.replaceChildren(...nodes);
    }
    this.setActive(this.activeId);
    this.renderStatus();
    this.watchGenerating();
  }

  private item(c: Conversation): HTMLLIElement {
    const li = h("li", { class: "conv-item", "data-id": c.id });
    const link = h(
      "a",
      { class: "conv-link", href: hashForConversation(c.id), title: c.title },
      h("span", { class: "conv-title", text: c.title }),
    );
    link.addEventListener("click", () => this.events.onNavigate());
    const rename = h("button", { type: "button", class: "icon-btn conv-rename" }, icon("edit"));
    const del = h("button", { type: "button", class: "icon-btn conv-delete" }, icon("trash"));
    rename.addEventListener("click", () => this.startRename(li));
    del.addEventListener("click", () => void this.confirmDelete(li));
    const actions = h("div", { class: "conv-actions" }, rename, del);
    li.append(link, actions);
    labelItem(li, c.title);
    return li;
  }

  private current(li: HTMLElement): Conversation | undefined {
    return this.pager.items.find((x) => x.id === li.dataset.id);
  }

  private setItemError(li: HTMLElement, text: string): void {
    li.querySelector(".conv-error")?.remove();
    if (text) li.append(h("p", { class: "conv-error", role: "alert", text }));
  }

  private startRename(li: HTMLElement): void {
    const conv = this.current(li);
    if (!conv || li.dataset.editing === "1") return;
    li.dataset.editing = "1";
    const link = li.querySelector<HTMLElement>(".conv-link")!;
    const actions = li.querySelector<HTMLElement>(".conv-actions")!;
    const input = h("input", {
      type: "text",
      class: "conv-rename-input",
      "aria-label": "New title",
      maxlength: 200,
    });
    input.value = conv.title;
    link.hidden = true;
    actions.hidden = true;
    li.insertBefore(input, link);
    input.focus();
    input.select();
    let done = false;
    const finish = (restoreFocus: boolean) => {
      done = true;
      input.remove();
      link.hidden = false;
      actions.hidden = false;
      delete li.dataset.editing;
      if (restoreFocus) li.querySelector<HTMLElement>(".conv-rename")?.focus();
    };
    const save = async () => {
      if (done) return;
      const title = input.value.trim();
      const latest = this.current(li);
      if (!title || !latest || title === latest.title) {
        if (!title) this.setItemError(li, "A title can't be empty.");
        finish(false);
        return;
      }
      input.disabled = true;
      try {
        const updated = await this.api.renameConversation(latest.id, title);
        finish(false);
        this.setItemError(li, "");
        this.pager.upsertFirst(updated);
        this.render();
        this.events.onRenamed(updated);
      } catch (e) {
        input.disabled = false;
        this.setItemError(li, `Couldn't rename: ${describeError(toApiError(e))}`);
        input.focus();
      }
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        void save();
      } else if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.setItemError(li, "");
        finish(true);
      }
    });
    input.addEventListener("blur", () => {
      if (!input.disabled) void save();
    });
  }

  private async confirmDelete(li: HTMLElement): Promise<void> {
    const conv = this.current(li);
    if (!conv) return;
    const ok = await this.ask(`Delete “${conv.title}”? Its messages and files will be removed for good.`);
    if (!ok) {
      li.querySelector<HTMLElement>(".conv-delete")?.focus();
      return;
    }
    try {
      await this.api.deleteConversation(conv.id);
    } catch (e) {
      const err = toApiError(e);
      if (err.code !== "not_found") {
        this.setItemError(li, `Couldn't delete: ${describeError(err)}`);
        return;
      }
    }
    this.pager.remove(conv.id);
    this.render();
    this.events.onDeleted(conv.id);
  }

  /** Asks with the confirmation dialog; resolves true on "Delete". */
  private ask(text: string): Promise<boolean> {
    const d = this.dialog;
    d.querySelector("#confirm-text")!.textContent = text;
    return new Promise((resolve) => {
      const onClose = () => {
        d.removeEventListener("close", onClose);
        resolve(d.returnValue === "confirm");
      };
      d.returnValue = "";
      d.addEventListener("close", onClose);
      d.showModal();
      d.querySelector<HTMLButtonElement>("#confirm-cancel")?.focus();
    });
  }
}
