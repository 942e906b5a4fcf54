// A small in-memory stand-in for `conversa-local`, following API.md, for working on the frontend
// without the Rust server (CONVERSA_E2E_MOCK=1, or `node e2e/mock-api.mjs` for development).
// It streams from the same OpenAI-compatible provider (OPENAI_BASE_URL). Extraction is naive:
// text files as UTF-8, PDF text from uncompressed `(...) Tj` operators.

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import crypto from "node:crypto";

const TYPES = {
  pdf: ["pdf", "application/pdf"], docx: ["docx"], xlsx: ["xlsx"], xls: ["xls"], ods: ["ods"],
  csv: ["csv"], txt: ["text"], md: ["text"], json: ["json"],
  png: ["image"], jpg: ["image"], jpeg: ["image"], webp: ["image"], gif: ["image"],
};
const MIME = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".json": "application/json", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf", ".png": "image/png" };

let seq = 0;
const newId = () => `${Date.now().toString(16).padStart(12, "0")}-${(seq++).toString(16).padStart(6, "0")}-${crypto.randomBytes(4).toString("hex")}`;
const now = () => new Date().toISOString();

function pdfText(buf) {
  const s = buf.toString("latin1");
  if (!s.startsWith("%PDF-")) return null;
  const out = [];
  for (const m of s.matchAll(/\(((?:\\.|[^\\)])*)\)\s*Tj/g)) out.push(m[1].replace(/\\(.)/g, "$1"));
  return out.join("\n");
}

/** The models of CONVERSA_MODELS_FILE (API.md, "Models"), or the one chat model of the variables. */
function loadModels(env) {
  if (env.CONVERSA_MODELS_FILE) {
    const list = JSON.parse(fs.readFileSync(env.CONVERSA_MODELS_FILE, "utf8"));
    const def = env.CONVERSA_CHAT_MODEL ?? list.find((m) => m.default)?.id ?? list[0].id;
    return list.map((m) => ({
      id: m.id,
      name: m.name ?? m.id,
      provider: m.provider,
      vision: m.vision ?? false,
      context_tokens: m.context_tokens ?? 8192,
      default: m.id === def,
      price: m.price ?? null,
      model: m.model ?? m.id,
    }));
  }
  const id = env.CONVERSA_CHAT_MODEL || "gpt-4o";
  return [{ id, name: id, provider: "openai", vision: true, context_tokens: 128000, default: true, price: null, model: id }];
}

export async function startMockApi(env) {
  const [host, portStr] = env.CONVERSA_BIND.split(":");
  const maxBytes = Number(env.CONVERSA_MAX_UPLOAD_BYTES || 10485760);
  const inlineMax = Number(env.CONVERSA_INLINE_MAX_BYTES || 4 * 1048576);
  const limitPerMinute = Number(env.CONVERSA_RATE_LIMIT_PER_MINUTE ?? 30);
  const upstream = env.OPENAI_BASE_URL;
  const staticDir = env.CONVERSA_FRONTEND_DIR;
  const convs = new Map();
  const msgs = new Map();
  const files = new Map();
  const hits = [];

  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const fail = (res, status, code, message, headers) => send(res, status, { error: { code, message } }, headers);
  const meta = (f) => { const { bytes, text, ...m } = f; return m; };
  const models = loadModels(env);

  function page(items, url, key) {
    const limit = Math.min(200, Math.max(1, Number(url.searchParams.get("limit") || 50)));
    const cursor = url.searchParams.get("cursor");
    let start = 0;
    if (cursor) {
      const after = Buffer.from(cursor, "base64url").toString();
      const idx = items.findIndex((i) => key(i) === after);
      start = idx + 1;
    }
    const slice = items.slice(start, start + limit);
    const next = start + limit < items.length ? Buffer.from(key(slice[slice.length - 1])).toString("base64url") : null;
    return { items: slice, next_cursor: next };
  }

  async function ingest(file, conversationId) {
    const name = file.name || "file";
    const ext = path.extname(name).slice(1).toLowerCase();
    const t = TYPES[ext];
    if (!t) return { error: [415, "unsupported_media_type", `${name}: unsupported file type`] };
    const bytes = Buffer.from(await file.arrayBuffer());
    if (bytes.length > maxBytes) return { error: [413, "payload_too_large", `${name} is ${(bytes.length / 1048576).toFixed(1)} MB; the limit is ${maxBytes / 1048576} MB`] };
    let text = null;
    let pages = null;
    if (t[0] === "pdf") {
      text = pdfText(bytes);
      if (text === null) return { error: [415, "unsupported_media_type", `${name} is not a PDF`] };
      pages = 1;
    } else if (["text", "csv", "json"].includes(t[0])) text = bytes.toString("utf8");
    const f = {
      id: newId(), conversation_id: conversationId || null, filename: name, content_type: file.type || "application/octet-stream",
      size: bytes.length, file_type: t[0], status: "ready", char_count: text ? text.length : null,
      token_count: text ? Math.ceil(text.length / 4) : null, pages, error: null, created_at: now(), bytes, text,
    };
    files.set(f.id, f);
    return { file: f };
  }

  async function readForm(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const ct = req.headers["content-type"] || "";
    if (ct.startsWith("application/json")) return { json: JSON.parse(body.toString("utf8") || "{}") };
    const r = new Request("http://x/", { method: "POST", headers: { "content-type": ct }, body });
    return { form: await r.formData() };
  }

  async function chat(req, res, simple = false) {
    if (limitPerMinute > 0) {
      const t = Date.now();
      while (hits.length && hits[0] < t - 60_000) hits.shift();
      hits.push(t);
      if (hits.length > limitPerMinute) {
        const retry = Math.max(1, Math.ceil((hits[0] + 60_000 - t) / 1000));
        return fail(res, 429, "rate_limited", "too many chat requests", { "retry-after": String(retry) });
      }
    }
    let input;
    try {
      input = await readForm(req);
    } catch {
      return fail(res, 400, "bad_request", "malformed body");
    }
    let message = "", convId = null, fileIds = [], uploads = [], modelId = null;
    if (input.json) {
      message = input.json.message ?? "";
      convId = input.json.conversation_id ?? null;
      fileIds = input.json.file_ids ?? [];
      modelId = input.json.model ?? null;
    } else {
      message = input.form.get("message") ?? "";
      convId = input.form.get("conversation_id") || null;
      fileIds = input.form.getAll("file_ids").flatMap((v) => String(v).split(",")).filter(Boolean);
      uploads = input.form.getAll("files");
      modelId = input.form.get("model") || null;
    }
    const model = modelId ? models.find((m) => m.id === modelId) : models.find((m) => m.default);
    if (!model) return fail(res, 422, "unprocessable", `unknown model "${modelId}"; available: ${models.map((m) => m.id).join(", ")}`);
    if (convId && !convs.has(convId)) return fail(res, 404, "not_found", "conversation not found");
    const attached = [];
    for (const id of fileIds) {
      const f = files.get(id);
      if (!f) return fail(res, 404, "not_found", "file not found");
      attached.push(f);
    }
    for (const u of uploads) {
      const r = await ingest(u, convId);
      if (r.error) return fail(res, ...r.error);
      attached.push(r.file);
    }
    if (!message.trim() && attached.length === 0) return fail(res, 400, "bad_request", "message is empty");
    let created = false;
    if (!convId) {
      convId = newId();
      convs.set(convId, { id: convId, title: "New conversation", message_count: 0, created_at: now(), updated_at: now() });
      msgs.set(convId, []);
      created = true;
    }
    const conv = convs.get(convId);
    for (const f of attached) f.conversation_id = convId;
    const history = msgs.get(convId).filter((m) => !(m.status === "error" && !m.content)).slice(-20);
    const userMsg = { id: newId(), conversation_id: convId, role: "user", content: message, files: attached.map(meta), token_count: null, status: "complete", created_at: now() };
    msgs.get(convId).push(userMsg);
    conv.message_count++;
    conv.updated_at = now();
    const fileText = attached.filter((f) => f.text).map((f) => `--- ${f.filename} ---\n${f.text}`).join("\n\n");
    const payload = {
      model: model.model,
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: "system", content: "You are Conversa." },
        ...history.map((m) => ({ role: m.role, content: m.content })),
        { role: "user", content: fileText ? `${message}\n\nAttached files:\n${fileText}` : message },
      ],
    };
    const assistant = { id: newId(), conversation_id: convId, role: "assistant", content: "", files: [], token_count: null, status: "complete", created_at: now() };
    let up;
    try {
      up = await fetch(`${upstream}/chat/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${env.OPENAI_API_KEY}` }, body: JSON.stringify(payload) });
    } catch {
      up = null;
    }
    if (!up || !up.ok) {
      assistant.status = "error";
      msgs.get(convId).push(assistant);
      conv.message_count++;
      return fail(res, 502, "upstream_error", "the model provider failed");
    }
    if (!simple) {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.socket?.setNoDelay(true);
    }
    const ev = (name, data) => !simple && res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    ev("meta", { conversation_id: convId, user_message_id: userMsg.id, assistant_message_id: assistant.id, created_conversation: created, files: attached.map(meta) });
    const reader = up.body.getReader();
    const dec = new TextDecoder();
    let buf = "", usage = null;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        assistant.status = "incomplete";
        break;
      }
      const { done, value } = chunk;
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
        if (!data || data === "[DONE]") continue;
        const j = JSON.parse(data);
        if (j.usage) usage = j.usage;
        const text = j.choices?.[0]?.delta?.content;
        if (text) {
          assistant.content += text;
          if (!res.destroyed) ev("token", { text });
        }
      }
    }
    msgs.get(convId).push(assistant);
    conv.message_count++;
    conv.updated_at = now();
    if (created) {
      try {
        const t = await fetch(`${upstream}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "t", messages: [{ role: "user", content: message }] }) });
        const title = (await t.json()).choices[0].message.content.trim().slice(0, 200);
        conv.title = title;
        if (!res.destroyed) ev("title", { conversation_id: convId, title });
      } catch {
        // no title
      }
    }
    if (simple) return send(res, 200, { conversation_id: convId, created_conversation: created, message: assistant, title: created ? conv.title : null });
    if (!res.destroyed) ev("done", { message_id: assistant.id, finish_reason: "stop", usage: usage ? { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens } : null });
    res.end();
  }

  async function route(req, res) {
    const url = new URL(req.url, "http://x");
    const p = url.pathname;
    const m = (re) => re.exec(p);
    let r;
    if (p === "/health") return send(res, 200, { status: "ok", checks: { store: "ok" }, version: "mock", model: env.CONVERSA_CHAT_MODEL || "gpt-4o" });
    if (p === "/api/models" && req.method === "GET") return send(res, 200, { items: models.map(({ model, ...m }) => m) });
    if (p === "/api/chat/send" && req.method === "POST") return chat(req, res);
    if (p === "/api/chat/send-simple" && req.method === "POST") return chat(req, res, true);
    if (p === "/api/conversations" && req.method === "GET") {
      const q = (url.searchParams.get("q") || "").toLowerCase();
      let items = [...convs.values()].sort((a, b) => (b.updated_at.localeCompare(a.updated_at) || b.id.localeCompare(a.id)));
      if (q) items = items.filter((c) => c.title.toLowerCase().includes(q) || msgs.get(c.id).some((mm) => mm.content.toLowerCase().includes(q)));
      return send(res, 200, page(items, url, (c) => c.id));
    }
    if (p === "/api/search" && req.method === "GET") {
      // Words only (the real server also searches by meaning).
      const q = (url.searchParams.get("q") || "").trim().toLowerCase();
      if (!q) return fail(res, 400, "bad_request", "q must be 1 to 1000 characters");
      const limit = Number(url.searchParams.get("limit") || 20);
      const items = [];
      for (const [id, list] of msgs) {
        for (const mm of list) {
          if (!mm.content.toLowerCase().includes(q)) continue;
          items.push({ kind: "message", conversation_id: id, message_id: mm.id, file_id: null, title: convs.get(id).title, snippet: mm.content.slice(0, 200), score: 1 / (61 + items.length) });
        }
      }
      return send(res, 200, { items: items.slice(0, limit) });
    }
    if ((r = m(/^\/api\/conversations\/([^/]+)\/messages$/)) && req.method === "GET") {
      const list = msgs.get(decodeURIComponent(r[1]));
      if (!list) return fail(res, 404, "not_found", "conversation not found");
      return send(res, 200, page(list, url, (x) => x.id));
    }
    if ((r = m(/^\/api\/conversations\/([^/]+)$/))) {
      const id = decodeURIComponent(r[1]);
      const c = convs.get(id);
      if (!c) return fail(res, 404, "not_found", "conversation not found");
      if (req.method === "GET") return send(res, 200, c);
      if (req.method === "DELETE") {
        convs.delete(id);
        msgs.delete(id);
        for (const [fid, f] of files) if (f.conversation_id === id) files.delete(fid);
        return send(res, 204);
      }
      if (req.method === "PATCH") {
        const { json } = await readForm(req);
        const title = String(json?.title ?? "").trim();
        if (!title || title.length > 200) return fail(res, 422, "unprocessable", "title must be 1–200 characters");
        c.title = title;
        c.updated_at = now();
        return send(res, 200, c);
      }
    }
    if (p === "/api/files" && req.method === "POST") {
      const { form } = await readForm(req);
      const file = form?.get("file");
      if (!file || typeof file === "string") return fail(res, 400, "bad_request", "missing file field");
      const r2 = await ingest(file, form.get("conversation_id"));
      if (r2.error) return fail(res, ...r2.error);
      if (r2.file.size > inlineMax) {
        // Pretend to extract in the background: processing → 50% → ready.
        const f = r2.file;
        f.status = "processing";
        f.progress = 0;
        setTimeout(() => (f.progress = 50), 400);
        setTimeout(() => {
          f.status = "ready";
          delete f.progress;
        }, 900);
        return send(res, 202, meta(f));
      }
      return send(res, 201, meta(r2.file));
    }
    if ((r = m(/^\/api\/files\/([^/]+)(\/download|\/text)?$/)) && req.method === "GET") {
      const f = files.get(decodeURIComponent(r[1]));
      if (!f) return fail(res, 404, "not_found", "file not found");
      if (r[2] === "/download") {
        res.writeHead(200, { "content-type": f.content_type, "content-disposition": `attachment; filename="${f.filename.replace(/"/g, "")}"` });
        return res.end(f.bytes);
      }
      if (r[2] === "/text") return send(res, 200, { file_id: f.id, text: f.text ?? "" });
      return send(res, 200, meta(f));
    }
    if (p.startsWith("/api")) return fail(res, 404, "not_found", "no such route");
    // static files
    const rel = decodeURIComponent(p === "/" ? "/index.html" : p);
    const file = path.join(staticDir, path.normalize(rel).replace(/^(\.\.[/\\])+/, ""));
    if (file.startsWith(staticDir) && fs.existsSync(file) && fs.statSync(file).isFile()) {
      res.writeHead(200, { "content-type": MIME[path.extname(file)] || "application/octet-stream" });
      return res.end(fs.readFileSync(file));
    }
    return fail(res, 404, "not_found", "not found");
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => {
      if (!res.headersSent) fail(res, 500, "internal", "internal error");
      else res.end();
      console.error(e);
    });
  });
  await new Promise((r) => server.listen(Number(portStr), host, r));
  return {
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { startFakeOpenAI } = await import("./fake-openai.mjs");
  const fake = await startFakeOpenAI();
  const bind = process.env.CONVERSA_BIND || "127.0.0.1:8080";
  await startMockApi({
    CONVERSA_BIND: bind,
    OPENAI_BASE_URL: process.env.OPENAI_BASE_URL || fake.baseUrl,
    OPENAI_API_KEY: "test",
    CONVERSA_FRONTEND_DIR: path.resolve(process.env.CONVERSA_FRONTEND_DIR || "dist"),
    CONVERSA_RATE_LIMIT_PER_MINUTE: process.env.CONVERSA_RATE_LIMIT_PER_MINUTE || "0",
  });
  console.log(`mock API on http://${bind}`);
}
