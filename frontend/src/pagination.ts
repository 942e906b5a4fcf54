/** Cursor pagination: list URLs, and a pager that loads pages one at a time without duplicates. */

import type { Page } from "./types";

export interface ListParams {
  limit?: number;
  cursor?: string | null;
  q?: string;
}

/** `path?limit=..&cursor=..&q=..`, omitting empty values. */
export function buildListUrl(path: string, params: ListParams): string {
  const qs = new URLSearchParams();
  if (params.limit != null) qs.set("limit", String(params.limit));
  if (params.cursor) qs.set("cursor", params.cursor);
  const q = params.q?.trim();
  if (q) qs.set("q", q);
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

export type PageFetcher<T> = (cursor: string | null, signal: AbortSignal) => Promise<Page<T>>;

/**
 * Holds the items loaded so far. `loadMore()` fetches the next page; concurrent calls share one
 * request; items already present (by id) are not added twice; `reset()` cancels a load in flight.
 */
export class CursorPager<T extends { id: string }> {
  items: T[] = [];
  private cursor: string | null = null;
  private finished = false;
  private inflight: Promise<T[]> | null = null;
  private controller: AbortController | null = null;
  private generation = 0;

  constructor(private readonly fetchPage: PageFetcher<T>) {}

  get hasMore(): boolean {
    return !this.finished;
  }

  get loading(): boolean {
    return this.inflight !== null;
  }

  /** Loads the next page; resolves with the items newly added. */
  loadMore(): Promise<T[]> {
    if (this.finished) return Promise.resolve([]);
    if (this.inflight) return this.inflight;
    const gen = this.generation;
    const controller = new AbortController();
    this.controller = controller;
    const p = this.fetchPage(this.cursor, controller.signal)
      .then((page) => {
        if (gen !== this.generation) return [];
        const known = new Set(this.items.map((i) => i.id));
        const added = page.items.filter((i) => !known.has(i.id));
        this.items.push(...added);
        this.cursor = page.next_cursor;
        // Stop on a missing cursor, or on a page that repeats the cursor (a server that loops).
        if (!page.next_cursor || page.items.length === 0) this.finished = true;
        return added;
      })
      .finally(() => {
        if (gen === this.generation) {
          this.inflight = null;
          this.controller = null;
        }
      });
    this.inflight = p;
    return p;
  }

  /** Forgets everything, cancelling a load in flight. */
  reset(): void {
    this.generation++;
    this.controller?.abort();
    this.controller = null;
    this.inflight = null;
    this.items = [];
    this.cursor = null;
    this.finished = false;
  }

  /** Puts an item first (new or updated), removing an older copy. */
  upsertFirst(item: T): void {
    this.items = [item, ...this.items.filter((i) => i.id !== item.id)];
  }

  /** Replaces an item in place if present. */
  update(item: T): void {
    const i = this.items.findIndex((x) => x.id === item.id);
    if (i >= 0) this.items[i] = item;
  }

  remove(id: string): void {
    this.items = this.items.filter((i) => i.id !== id);
  }
}
