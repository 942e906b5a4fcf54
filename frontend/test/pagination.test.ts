import { describe, expect, it } from "vitest";
import { CursorPager, buildListUrl } from "../src/pagination";
import type { Page } from "../src/types";

type Item = { id: string };

function fakeServer(pages: Record<string, Page<Item>>) {
  const calls: (string | null)[] = [];
  const fetchPage = async (cursor: string | null) => {
    calls.push(cursor);
    const p = pages[cursor ?? ""];
    if (!p) throw new Error("unknown cursor " + cursor);
    return p;
  };
  return { calls, fetchPage };
}

describe("buildListUrl", () => {
  it("adds limit, cursor and q, omitting empty ones", () => {
    expect(buildListUrl("/api/conversations", {})).toBe("/api/conversations");
    expect(buildListUrl("/api/conversations", { limit: 30 })).toBe("/api/conversations?limit=30");
    expect(buildListUrl("/api/conversations", { limit: 30, cursor: "a b/+", q: "  q4 report " })).toBe(
      "/api/conversations?limit=30&cursor=a+b%2F%2B&q=q4+report",
    );
    expect(buildListUrl("/x", { cursor: null, q: "   " })).toBe("/x");
  });
});

describe("CursorPager", () => {
  it("follows next_cursor until it is null", async () => {
    const s = fakeServer({
      "": { items: [{ id: "1" }, { id: "2" }], next_cursor: "c2" },
      c2: { items: [{ id: "3" }], next_cursor: null },
    });
    const p = new CursorPager<Item>(s.fetchPage);
    expect(p.hasMore).toBe(true);
    expect(await p.loadMore()).toEqual([{ id: "1" }, { id: "2" }]);
    expect(await p.loadMore()).toEqual([{ id: "3" }]);
    expect(p.hasMore).toBe(false);
    expect(await p.loadMore()).toEqual([]);
    expect(s.calls).toEqual([null, "c2"]);
    expect(p.items.map((i) => i.id)).toEqual(["1", "2", "3"]);
  });

  it("shares one request between concurrent calls", async () => {
    const s = fakeServer({ "": { items: [{ id: "1" }], next_cursor: null } });
    const p = new CursorPager<Item>(s.fetchPage);
    const [a, b] = await Promise.all([p.loadMore(), p.loadMore()]);
    expect(a).toBe(b);
    expect(s.calls).toHaveLength(1);
  });

  it("skips items already loaded (an item that moved between pages)", async () => {
    const s = fakeServer({
      "": { items: [{ id: "1" }, { id: "2" }], next_cursor: "c2" },
      c2: { items: [{ id: "2" }, { id: "3" }], next_cursor: null },
    });
    const p = new CursorPager<Item>(s.fetchPage);
    await p.loadMore();
    expect(await p.loadMore()).toEqual([{ id: "3" }]);
    expect(p.items.map((i) => i.id)).toEqual(["1", "2", "3"]);
  });

  it("stops on an empty page even with a cursor", async () => {
    const s = fakeServer({ "": { items: [], next_cursor: "again" } });
    const p = new CursorPager<Item>(s.fetchPage);
    await p.loadMore();
    expect(p.hasMore).toBe(false);
  });

  it("keeps the cursor after a failed page so the next call retries it", async () => {
    let fail = true;
    const p = new CursorPager<Item>(async (cursor) => {
      if (cursor === "c2" && fail) throw new Error("boom");
      return cursor ? { items: [{ id: "b" }], next_cursor: null } : { items: [{ id: "a" }], next_cursor: "c2" };
    });
    await p.loadMore();
    await expect(p.loadMore()).rejects.toThrow("boom");
    expect(p.loading).toBe(false);
    fail = false;
    expect(await p.loadMore()).toEqual([{ id: "b" }]);
  });

  it("reset drops a page that arrives late", async () => {
    let release!: (p: Page<Item>) => void;
    const p = new CursorPager<Item>(() => new Promise((r) => (release = r)));
    const pending = p.loadMore();
    p.reset();
    release({ items: [{ id: "stale" }], next_cursor: null });
    expect(await pending).toEqual([]);
    expect(p.items).toEqual([]);
    expect(p.hasMore).toBe(true);
  });

  it("upsertFirst moves an item to the top; update and remove work in place", () => {
    const p = new CursorPager<Item & { t?: string }>(async () => ({ items: [], next_cursor: null }));
    p.items = [{ id: "a" }, { id: "b" }, { id: "c" }];
    p.upsertFirst({ id: "c", t: "new" });
    expect(p.items.map((i) => i.id)).toEqual(["c", "a", "b"]);
    p.update({ id: "a", t: "x" });
    expect(p.items[1]).toEqual({ id: "a", t: "x" });
    p.remove("b");
    expect(p.items.map((i) => i.id)).toEqual(["c", "a"]);
  });
});
