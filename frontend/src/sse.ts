/**
 * Incremental parser for `text/event-stream` bodies (the WHATWG EventSource format).
 *
 * Feed it decoded text in whatever pieces the network delivers; it returns the events that
 * became complete. It handles LF, CR and CRLF line ends (also a CRLF split across two chunks),
 * comment lines such as `: ping`, multi-line `data:` fields and a leading byte-order mark.
 */

export interface SseEvent {
  /** The `event:` field, `"message"` when absent. */
  event: string;
  /** All `data:` lines of the event joined with `\n`. */
  data: string;
  /** The `id:` field when present. */
  id?: string;
}

export class SseParser {
  private buffer = "";
  private started = false;
  private pendingCR = false;
  private eventType = "";
  private dataLines: string[] = [];
  private hasData = false;
  private lastId: string | undefined;
  private readonly onComment?: (text: string) => void;

  constructor(options: { onComment?: (text: string) => void } = {}) {
    this.onComment = options.onComment;
  }

  /** Adds a chunk of text and returns the events completed by it. */
  feed(chunk: string): SseEvent[] {
    if (!this.started) {
      if (chunk.length === 0) return [];
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.pendingCR) {
      // The previous chunk ended with CR: a following LF belongs to the same line end.
      this.pendingCR = false;
      if (chunk.startsWith("\n")) chunk = chunk.slice(1);
    }
    this.buffer += chunk;
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.buffer.slice(start, i);
      if (c === 13) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
      const ev = this.processLine(line);
      if (ev) events.push(ev);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /**
   * Signals the end of the stream. Per the format, an event that was not terminated by a blank
   * line is discarded; the parser is reset for reuse.
   */
  end(): SseEvent[] {
    this.buffer = "";
    this.pendingCR = false;
    this.resetEvent();
    this.started = false;
    return [];
  }

  private resetEvent(): void {
    this.eventType = "";
    this.dataLines = [];
    this.hasData = false;
  }

  private processLine(line: string): SseEvent | null {
    if (line === "") {
      if (!this.hasData) {
        this.resetEvent();
        return null;
      }
      const ev: SseEvent = { event: this.eventType || "message", data: this.dataLines.join("\n") };
      if (this.lastId !== undefined) ev.id = this.lastId;
      this.resetEvent();
      return ev;
    }
    if (line.startsWith(":")) {
      this.onComment?.(line.slice(1).replace(/^ /, ""));
      return null;
    }
    const colon = line.indexOf(":");
    let field: string;
    let value: string;
    if (colon === -1) {
      field = line;
      value = "";
    } else {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.dataLines.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      default:
        // `retry` and unknown fields are ignored: the client does not reconnect.
        break;
    }
    return null;
  }
}

/**
 * Reads a byte stream as SSE and yields events as they complete. UTF-8 sequences split across
 * chunks are decoded correctly.
 */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  options: { onComment?: (text: string) => void } = {},
): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SseParser(options);
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const ev of parser.feed(decoder.decode(value, { stream: true }))) yield ev;
    }
    for (const ev of parser.feed(decoder.decode())) yield ev;
    parser.end();
    finished = true;
  } finally {
    if (!finished) reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
