// A fake OpenAI-compatible provider for the end-to-end tests. Its answers depend on the request:
//   - a quote of the attached document when the context holds a "ZEBRA-" marker sentence;
//   - SLOW_STREAM: a long answer streamed slowly (to press Stop midway);
//   - MEDIUM_STREAM: an answer of about two seconds (the title is ready before it ends, so the
//     server sends the `title` event);
//   - MALICIOUS_OUTPUT: Markdown/HTML that tries to run script;
//   - FAIL_UPSTREAM: HTTP 500 from the provider;
//   - SHOWCASE: Markdown with a table, code and math (for screenshots);
//   - COUNTED: "Answer number N to: …", N rising with every answer this provider gives to such a
//     question (so a regenerated answer differs from the one before);
//   - BENCH_ANSWER:TOKENS:RATE: the long Markdown answer of bench/answer.mjs in TOKENS pieces at
//     RATE pieces a second; BENCH_HISTORY:I: its section I at once (bench/render.mjs);
//   - CITE:WORD: an answer citing the numbered passage ("[n] page …" in the prompt) that holds
//     WORD, as a model asked to cite would (the number is read from the prompt);
//   - otherwise an echo of the user's words.
// Title requests (the title model, any non-streaming request, or a system prompt asking for a
// title) get a short title: as JSON, or streamed when the request streams.

import http from "node:http";
import { longAnswer, section, tokensOf } from "../bench/answer.mjs";

export const MALICIOUS_MARKDOWN = [
  "Here is some **dangerous** output, and a [safe link](https://example.com/docs):\n\n",
  "<script>window.__pwned = 'script'</script>\n\n",
  '<img src="x" onerror="window.__pwned = \'img\'">\n\n',
  "[click me](javascript:window.__pwned='md-link')\n\n",
  '<a href="javascript:window.__pwned=\'a-href\'">raw link</a>\n\n',
  '<a href="&#106;avascript:window.__pwned=\'entity\'">entity link</a>\n\n',
  '<svg onload="window.__pwned=\'svg\'"><circle r="5"/></svg>\n\n',
  "<svg><script>window.__pwned='svg-script'</script></svg>\n\n",
  "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__pwned='mxss'\">\n\n",
  '<iframe src="javascript:window.__pwned=\'iframe\'"></iframe>\n\n',
  '<details open ontoggle="window.__pwned=\'details\'"><summary>s</summary>d</details>\n\n',
  '<input autofocus onfocus="window.__pwned=\'input\'">\n\n',
  "![image](javascript:window.__pwned='md-img')\n\n",
  "The end.\n",
];

export const SHOWCASE_MARKDOWN = `Here is a summary of **Q4** by region:

| Region | Revenue | Growth |
|---|---:|---:|
| North | $1.2M | 12% |
| South | $0.9M | 8% |

The compound growth over $n$ quarters is $g = (1+r)^n - 1$, and the yearly total is

$$
R = \\sum_{q=1}^{4} r_q
$$

\`\`\`python
def growth(rate: float, quarters: int) -> float:
    return (1 + rate) ** quarters - 1
\`\`\`

1. Revenue grew in every region.
2. Costs stayed flat.
`;

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p && p.type === "text" ? p.text : "")).join("\n");
  return "";
}

function chunks(text, size) {
  const out = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let counted = 0;

/** The number of the passage holding `word`: the "[n] …" header line nearest before it. */
export function passageNumberOf(messages, word) {
  for (const m of messages) {
    const text = textOf(m.content);
    for (let at = text.indexOf(word); at >= 0; at = text.indexOf(word, at + 1)) {
      if (text.slice(0, at).endsWith("CITE:")) continue;
      const lines = text.slice(0, at).split("\n").reverse();
      for (const line of lines) {
        const h = /^\[(\d+)\]/.exec(line);
        if (h) return Number(h[1]);
      }
    }
  }
  return null;
}

export function answerFor(messages) {
  const all = messages.map((m) => textOf(m.content)).join("\n");
  const users = messages.filter((m) => m.role === "user");
  const last = users.length ? textOf(users[users.length - 1].content) : "";
  const bench = /BENCH_ANSWER:(\d+):(\d+)/.exec(last);
  if (bench) return { kind: "text", parts: tokensOf(longAnswer(Number(bench[1]) * 5), Number(bench[1])), rate: Number(bench[2]) };
  const history = /BENCH_HISTORY:(\d+)/.exec(last);
  if (history) return { kind: "text", parts: chunks(section(Number(history[1])), 64), delay: 0 };
  const cite = /CITE:([A-Z]+-\d+)/.exec(last);
  if (cite) {
    const n = passageNumberOf(messages, cite[1]);
    const text = n === null ? `No passage holds ${cite[1]}.` : `The launch code is ${cite[1]} [${n}]. In code: \`arr[${n}]\`.`;
    return { kind: "text", parts: chunks(text, 5), delay: 8 };
  }
  if (last.includes("FAIL_UPSTREAM")) return { kind: "fail" };
  if (last.includes("MALICIOUS_OUTPUT")) return { kind: "text", parts: MALICIOUS_MARKDOWN, delay: 5 };
  if (last.includes("SLOW_STREAM")) {
    const parts = [];
    for (let i = 1; i <= 400; i++) parts.push(`word${i} `);
    return { kind: "text", parts, delay: 60 };
  }
  if (last.includes("MEDIUM_STREAM")) {
    const parts = [];
    for (let i = 1; i <= 40; i++) parts.push(`step${i} `);
    return { kind: "text", parts, delay: 50 };
  }
  if (last.includes("COUNTED")) {
    counted++;
    return { kind: "text", parts: chunks(`Answer number ${counted} to: ${last.trim().slice(0, 100)}`, 5), delay: 8 };
  }
  if (last.includes("SHOWCASE") || /summari[sz]e .*by region/i.test(last)) return { kind: "text", parts: chunks(SHOWCASE_MARKDOWN, 6), delay: 4 };
  const m = /ZEBRA-\d+[^\n]*?(?:\.|$)/m.exec(all);
  if (m) {
    const quote = m[0].replace(/\s+/g, " ").trim();
    return { kind: "text", parts: chunks(`The document says: "${quote}"`, 4), delay: 8 };
  }
  const said = last.trim().slice(0, 200);
  return { kind: "text", parts: chunks(`You said: "${said}". This is a **test answer**.`, 4), delay: 8 };
}

export function titleFor(messages) {
  const all = messages.map((m) => textOf(m.content)).join("\n");
  if (/SHOWCASE|summari[sz]e .*by region/i.test(all)) return "Quarterly Revenue Summary";
  if (/ZEBRA|revenue/i.test(all)) return "Zebra Revenue Question";
  if (/SLOW_STREAM/.test(all)) return "A Very Long Answer";
  const m = /TITLE:(\w+)/.exec(all);
  if (m) return m[1].includes("_") ? m[1].replace(/_/g, " ") : `Topic ${m[1]}`;
  return "Friendly Test Chat";
}


/** The model of title requests (the harness sets CONVERSA_TITLE_MODEL to it). */
export const TITLE_MODEL = "fake-title-model";

/** A title request: the title model, a non-streaming request, or a system prompt asking for a title. */
function isTitleRequest(body) {
  if (body.model === TITLE_MODEL || !body.stream) return true;
  const system = (body.messages ?? []).filter((m) => m.role === "system").map((m) => textOf(m.content)).join("\n");
  return /\btitle\b/i.test(system) && !/Conversa/.test(system);
}

async function streamAnswer(res, body, answer) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.socket?.setNoDelay(true);
  let closed = false;
  res.on("close", () => (closed = true));
  const chunk = (delta, finish = null) =>
    `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", created: 0, model: body.model || "m", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  res.write(chunk({ role: "assistant", content: "" }));
  let completion = 0;
  const start = performance.now();
  for (const part of answer.parts) {
    if (closed) return;
    if (answer.rate) {
      // Paced from the start, so timer lateness does not add up.
      const due = start + (completion * 1000) / answer.rate - performance.now();
      if (due > 0) await sleep(due);
    }
    res.write(chunk({ content: part }));
    completion++;
    if (answer.delay) await sleep(answer.delay);
  }
  res.write(chunk({}, "stop"));
  res.write(
    `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", created: 0, model: body.model || "m", choices: [], usage: { prompt_tokens: 42, completion_tokens: completion, total_tokens: 42 + completion } })}\n\n`,
  );
  res.write("data: [DONE]\n\n");
  res.end();
}

export async function startFakeOpenAI() {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const bodyChunks = [];
    for await (const c of req) bodyChunks.push(c);
    const raw = Buffer.concat(bodyChunks).toString("utf8");
    if (req.method === "GET" && req.url.startsWith("/v1/models")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: "m", object: "model", created: 0, owned_by: "test" }] }));
      return;
    }
    if (req.method !== "POST" || !req.url.startsWith("/v1/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }));
      return;
    }
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "bad json", type: "invalid_request_error" } }));
      return;
    }
    requests.push(body);
    const messages = Array.isArray(body.messages) ? body.messages : [];
    if (isTitleRequest(body)) {
      const title = titleFor(messages);
      if (!body.stream) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "t",
            object: "chat.completion",
            created: 0,
            model: body.model || "m",
            choices: [{ index: 0, message: { role: "assistant", content: title }, finish_reason: "stop" }],
            usage: { prompt_tokens: 10, completion_tokens: 3, total_tokens: 13 },
          }),
        );
        return;
      }
      // A server may stream the title request too.
      await streamAnswer(res, body, { parts: [title], delay: 0 });
      return;
    }
    const answer = answerFor(messages);
    if (answer.kind === "fail") {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "the fake provider failed on purpose", type: "server_error" } }));
      return;
    }
    await streamAnswer(res, body, answer);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}
