/**
 * Conversations are trees of messages: each names its parent, siblings are alternative answers
 * (regenerated) or edits. The view shows one branch, from the first message to the current leaf,
 * and lets the reader step between siblings ("‹ 2 / 3 ›").
 */

import type { Message } from "./types";

/** Where a message stands among its siblings. */
export interface SiblingPlace {
  /** 1-based. */
  index: number;
  count: number;
  prev: string | null;
  next: string | null;
}

const order = (a: Message, b: Message) =>
  a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;

/** The branch ending at `leaf`, oldest first (empty when `leaf` is not among `messages`). */
export function branchOf(messages: Message[], leaf: string | null | undefined): Message[] {
  const byId = new Map(messages.map((m) => [m.id, m]));
  const out: Message[] = [];
  let at = leaf ? byId.get(leaf) : undefined;
  const seen = new Set<string>();
  while (at && !seen.has(at.id)) {
    seen.add(at.id);
    out.push(at);
    at = at.parent_id ? byId.get(at.parent_id) : undefined;
  }
  return out.reverse();
}

/** Each message's place among the messages that share its parent, in the order they were written. */
export function siblingPlaces(messages: Message[]): Map<string, SiblingPlace> {
  const groups = new Map<string, Message[]>();
  for (const m of messages) {
    const key = m.parent_id ?? "";
    const g = groups.get(key);
    if (g) g.push(m);
    else groups.set(key, [m]);
  }
  const out = new Map<string, SiblingPlace>();
  for (const g of groups.values()) {
    g.sort(order);
    g.forEach((m, i) => {
      out.set(m.id, {
        index: i + 1,
        count: g.length,
        prev: g[i - 1]?.id ?? null,
        next: g[i + 1]?.id ?? null,
      });
    });
  }
  return out;
}
