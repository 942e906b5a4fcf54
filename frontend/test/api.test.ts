import { afterEach, describe, expect, it, vi } from "vitest";
import { Api } from "../src/api";
import { ApiError } from "../src/errors";

function sseResponse(chunks: string[], status = 200): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
  return new Response(body, { status, headers: { "content-type": "text/event-stream" } });
}

const api = new Api({ apiBase: "https://api.example.com", maxUploadBytes: 100 });

afterEach(() => vi.unstubAllGlobals());

describe("Api.sendChat", () => {
  it("posts multipart with repeated file_ids and dispatches every event", async () => {
    const fetchMock = vi.fn(async () =>
      sseResponse([
        'event: meta\ndata: {"conversation_id":"c1","user_message_id":"u1","assistant_message_id":"a1","created_conversation":true,"files":[]}\n\n',
        ": ping\n\nevent: token\ndata: {\"text\":\"Hel\"}\n\nevent: tok",
        'en\r\ndata: {"text":"lo"}\r\n\r\nevent: title\ndata: {"conversation_id":"c1","title":"Greeting"}\n\n',
        'event: done\ndata: {"message_id":"a1","finish_reason":"stop","usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
      ]),
    );
    vi.stubGlobal("fetch", fetchMock);
    const seen: string[] = [];
    const done = await api.sendChat(
      { message: "hi", conversationId: "c0", fileIds: ["f1", "f2"] },
      {
        onMeta: (m) => seen.push(`meta:${m.conversation_id}`),
        onToken: (t) => seen.push(`token:${t}`),
        onTitle: (t) => seen.push(`title:${t.title}`),
        onDone: (d) => seen.push(`done:${d.message_id}`),
      },
      new AbortController().signal,
    );
    expect(seen).toEqual(["meta:c1", "token:Hel", "token:lo", "title:Greeting", "done:a1"]);
    expect(done.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2 });
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("https://api.example.com/api/chat/send");
    const form = init.body as FormData;
    expect(form.get("message")).toBe("hi");
    expect(form.get("conversation_id")).toBe("c0");
    expect(form.getAll("file_ids")).toEqual(["f1", "f2"]);
  });

  it("turns an error event into an ApiError after the tokens so far", async () => {
    vi.stubGlobal("fetch", async () =>
      sseResponse(['event: token\ndata: {"text":"partial"}\n\nevent: error\ndata: {"code":"upstream_error","message":"provider went away"}\n\n']),
    );
    const tokens: string[] = [];
    const p = api.sendChat({ message: "x" }, { onToken: (t) => tokens.push(t) }, new AbortController().signal);
    await expect(p).rejects.toMatchObject({ code: "upstream_error", message: "provider went away" });
    expect(tokens).toEqual(["partial"]);
  });

  it("reports a stream that ends without done", async () => {
    vi.stubGlobal("fetch", async () => sseResponse(['event: token\ndata: {"text":"a"}\n\n']));
    await expect(api.sendChat({ message: "x" }, {}, new AbortController().signal)).rejects.toMatchObject({
      code: "stream_interrupted",
    });
  });

  it("refusals before the stream keep their code and Retry-After", async () => {
    vi.stubGlobal(
      "fetch",
      async () =>
        new Response('{"error":{"code":"rate_limited","message":"slow down"}}', {
          status: 429,
          headers: { "content-type": "application/json", "Retry-After": "12" },
        }),
    );
    const err = await api.sendChat({ message: "x" }, {}, new AbortController().signal).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 429, code: "rate_limited", retryAfter: 12 });
  });

  it("maps a network failure to network_error and tells the listener", async () => {
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Failed to fetch");
    });
    const local = new Api({ apiBase: "", maxUploadBytes: 1 });
    const listener = vi.fn();
    local.onNetworkFailure = listener;
    await expect(local.sendChat({ message: "x" }, {}, new AbortController().signal)).rejects.toMatchObject({
      code: "network_error",
    });
    expect(listener).toHaveBeenCalledOnce();
  });
});

describe("Api JSON routes", () => {
  it("lists conversations with limit, cursor and q", async () => {
    const fetchMock = vi.fn(async () => new Response('{"items":[],"next_cursor":null}', { status: 200 }));
    vi.stubGlobal("fetch", fetchMock);
    await api.listConversations({ limit: 30, cursor: "abc", q: "report" });
    expect((fetchMock.mock.calls[0] as unknown as [string])[0]).toBe(
      "https://api.example.com/api/conversations?limit=30&cursor=abc&q=report",
    );
  });

  it("follows the cursor when messages are paged", async () => {
    const pages: Record<string, string> = {
      "": '{"items":[{"id":"m1"}],"next_cursor":"n2"}',
      n2: '{"items":[{"id":"m2"}],"next_cursor":null}',
    };
    vi.stubGlobal("fetch", async (url: string) => {
      const cursor = new URL(url).searchParams.get("cursor") ?? "";
      return new Response(pages[cursor], { status: 200 });
    });
    const msgs = await api.listMessages("c 1");
    expect(msgs.map((m) => m.id)).toEqual(["m1", "m2"]);
  });

  it("treats 204 as success for delete and errors by their shape", async () => {
    vi.stubGlobal("fetch", async () => new Response(null, { status: 204 }));
    await expect(api.deleteConversation("c1")).resolves.toBeUndefined();
    vi.stubGlobal("fetch", async () => new Response('{"error":{"code":"not_found","message":"no"}}', { status: 404 }));
    await expect(api.getConversation("zzz")).rejects.toMatchObject({ code: "not_found", status: 404 });
  });

  it("reads /health also when it answers 503", async () => {
    vi.stubGlobal(
      "fetch",
      async () => new Response('{"status":"degraded","checks":{"store":"down"},"version":"1"}', { status: 503 }),
    );
    await expect(api.health()).resolves.toMatchObject({ status: "degraded" });
  });
});

describe("Api.search", () => {
  it("asks /api/search with the query and limit encoded and returns the hits", async () => {
    const hit = {
      kind: "file",
      conversation_id: "c1",
      message_id: null,
      file_id: "f1",
      title: "Office rules",
      snippet: "Staff may bring a dog to the office on Fridays",
      score: 0.03,
    };
    const fetchMock = vi.fn(
      async () => new Response(JSON.stringify({ items: [hit] }), { status: 200, headers: { "content-type": "application/json" } }),
    );
    vi.stubGlobal("fetch", fetchMock);
    const reply = await api.search("pets & work?", 8);
    expect(reply.items).toEqual([hit]);
    const [url] = fetchMock.mock.calls[0] as unknown as [string];
    const u = new URL(url);
    expect(u.pathname).toBe("/api/search");
    expect(u.searchParams.get("q")).toBe("pets & work?");
    expect(u.searchParams.get("limit")).toBe("8");
  });

  it("rejects with the server's error", async () => {
    vi.stubGlobal(
      "fetch",
      async () =>
        new Response(JSON.stringify({ error: { code: "bad_request", message: "q must be 1 to 1000 characters" } }), {
          status: 400,
          headers: { "content-type": "application/json" },
        }),
    );
    await expect(api.search("x", 8)).rejects.toMatchObject({ code: "bad_request" });
  });
});
