import { describe, expect, it } from "vitest";
import { SseParser, readSse, type SseEvent } from "../src/sse";

function feedAll(chunks: string[], onComment?: (t: string) => void): SseEvent[] {
  const p = new SseParser({ onComment });
  return chunks.flatMap((c) => p.feed(c));
}

const STREAM =
  'event: meta\ndata: {"conversation_id":"c1"}\n\n' +
  ': ping\n\n' +
  'event: token\ndata: {"text":"Hel"}\n\n' +
  'event: token\ndata: {"text":"lo"}\n\n' +
  'event: done\ndata: {"message_id":"m1"}\n\n';

describe("SseParser", () => {
  it("parses whole events", () => {
    const evs = feedAll([STREAM]);
    expect(evs.map((e) => e.event)).toEqual(["meta", "token", "token", "done"]);
    expect(JSON.parse(evs[1]!.data)).toEqual({ text: "Hel" });
  });

  it("gives the same events for every split of the stream into two chunks", () => {
    const whole = feedAll([STREAM]);
    for (let i = 0; i <= STREAM.length; i++) {
      expect(feedAll([STREAM.slice(0, i), STREAM.slice(i)])).toEqual(whole);
    }
  });

  it("handles one character at a time", () => {
    expect(feedAll(STREAM.split(""))).toEqual(feedAll([STREAM]));
  });

  it("handles CRLF and lone CR line ends, also split between chunks", () => {
    const crlf = STREAM.replace(/\n/g, "\r\n");
    const cr = STREAM.replace(/\n/g, "\r");
    const whole = feedAll([STREAM]);
    expect(feedAll([crlf])).toEqual(whole);
    expect(feedAll([cr])).toEqual(whole);
    for (let i = 0; i <= crlf.length; i++) {
      expect(feedAll([crlf.slice(0, i), crlf.slice(i)])).toEqual(whole);
    }
    expect(feedAll(crlf.split(""))).toEqual(whole);
  });

  it("reports comments (pings) and does not turn them into events", () => {
    const comments: string[] = [];
    const evs = feedAll([": ping\n\n:\n\nevent: token\ndata: x\n\n: ping\r\n\r\n"], (c) => comments.push(c));
    expect(evs).toEqual([{ event: "token", data: "x" }]);
    expect(comments).toEqual(["ping", "", "ping"]);
  });

  it("joins multi-line data with newlines", () => {
    const evs = feedAll(["data: line one\ndata: line two\ndata:\ndata:  indented\n\n"]);
    expect(evs).toEqual([{ event: "message", data: "line one\nline two\n\n indented" }]);
  });

  it("defaults the event name to message and resets it after each event", () => {
    const evs = feedAll(["event: token\ndata: a\n\ndata: b\n\n"]);
    expect(evs.map((e) => e.event)).toEqual(["token", "message"]);
  });

  it("ignores blocks without data, unknown fields and retry", () => {
    const evs = feedAll(["event: token\n\nretry: 100\nfoo: bar\ndata: ok\n\n"]);
    expect(evs).toEqual([{ event: "message", data: "ok" }]);
  });

  it("accepts fields without a space after the colon, and a field with no colon", () => {
    const evs = feedAll(["event:title\ndata:{}\n\ndata\n\n"]);
    expect(evs).toEqual([
      { event: "title", data: "{}" },
      { event: "message", data: "" },
    ]);
  });

  it("keeps the last id", () => {
    const evs = feedAll(["id: 7\ndata: a\n\ndata: b\n\n"]);
    expect(evs).toEqual([
      { event: "message", data: "a", id: "7" },
      { event: "message", data: "b", id: "7" },
    ]);
  });

  it("strips a leading byte-order mark", () => {
    expect(feedAll(["\ufeffdata: x\n\n"])).toEqual([{ event: "message", data: "x" }]);
  });

  it("does not dispatch an unterminated event at the end", () => {
    const p = new SseParser();
    expect(p.feed("event: token\ndata: partial")).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  it("keeps data colons and spaces intact", () => {
    const evs = feedAll(['data: {"text":"a: b  "}\n\n']);
    expect(JSON.parse(evs[0]!.data)).toEqual({ text: "a: b  " });
  });
});

describe("readSse", () => {
  it("decodes UTF-8 split across byte chunks", async () => {
    const bytes = new TextEncoder().encode('event: token\r\ndata: {"text":"héllo 🌍"}\r\n\r\n');
    const chunks = Array.from(bytes, (b) => new Uint8Array([b]));
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const ch of chunks) c.enqueue(ch);
        c.close();
      },
    });
    const out: SseEvent[] = [];
    for await (const ev of readSse(body)) out.push(ev);
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0]!.data).text).toBe("héllo 🌍");
  });
});
