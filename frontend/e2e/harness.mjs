// Shared end-to-end harness: a fake model provider, the real `conversa-local` server (or, with
// CONVERSA_E2E_MOCK=1, the small in-process stand-in in mock-api.mjs), and headless Chromium.

import { spawn } from "node:child_process";
import { after, before } from "node:test";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { TITLE_MODEL, startFakeOpenAI } from "./fake-openai.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const frontendDir = path.resolve(here, "..");
export const distDir = path.join(frontendDir, "dist");

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function waitForHealth(baseUrl, proc, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`server exited with code ${proc.exitCode}`);
    try {
      const res = await fetch(`${baseUrl}/health`);
      if (res.status === 200 || res.status === 503) return await res.json();
      last = `status ${res.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`server did not answer /health within ${timeoutMs} ms (${last})`);
}

/**
 * Starts the fake provider and the server. Extra environment variables for the server may be
 * passed (e.g. a rate limit), or a function of the fake provider that returns them (e.g. a models
 * file naming its address); `options.port` picks the server's port (an identity provider must know
 * the app's address before it starts). Returns { baseUrl, fake, logs(), stop() }.
 */
export async function startStack(extraEnv = {}, options = {}) {
  if (!fs.existsSync(path.join(distDir, "index.html"))) {
    throw new Error(`${distDir} has no build: run "npm run build" first`);
  }
  const fake = await startFakeOpenAI();
  if (typeof extraEnv === "function") extraEnv = extraEnv(fake);
  const port = options.port ?? (await freePort());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "conversa-e2e-data-"));
  const env = {
    ...process.env,
    CONVERSA_BIND: `127.0.0.1:${port}`,
    CONVERSA_DATA_DIR: dataDir,
    OPENAI_API_KEY: "test",
    OPENAI_BASE_URL: fake.baseUrl,
    CONVERSA_FRONTEND_DIR: distDir,
    CONVERSA_TITLE_MODEL: TITLE_MODEL,
    CONVERSA_RATE_LIMIT_PER_MINUTE: "0",
    RUST_LOG: process.env.RUST_LOG ?? "warn",
    ...extraEnv,
  };
  const baseUrl = `http://127.0.0.1:${port}`;
  let output = "";
  let proc = null;
  let mock = null;
  if (process.env.CONVERSA_E2E_MOCK === "1") {
    const { startMockApi } = await import("./mock-api.mjs");
    mock = await startMockApi(env);
  } else {
    const bin = path.resolve(frontendDir, process.env.CONVERSA_LOCAL_BIN ?? "../target/debug/conversa-local");
    if (!fs.existsSync(bin)) {
      throw new Error(`server binary not found at ${bin}: build it (cargo build -p conversa-local) or set CONVERSA_LOCAL_BIN`);
    }
    proc = spawn(bin, [], { env, stdio: ["ignore", "pipe", "pipe"] });
    const collect = (d) => {
      output += d.toString();
      if (output.length > 200_000) output = output.slice(-100_000);
    };
    proc.stdout.on("data", collect);
    proc.stderr.on("data", collect);
  }
  try {
    await waitForHealth(baseUrl, proc);
  } catch (e) {
    proc?.kill("SIGKILL");
    await mock?.close();
    await fake.close();
    throw new Error(`${e.message}\n--- server output ---\n${output}`);
  }
  // A process ended by a signal has a null exitCode and a signalCode.
  const running = () => proc !== null && proc.exitCode === null && proc.signalCode === null;
  return {
    baseUrl,
    fake,
    dataDir,
    logs: () => output,
    /** Stops only the server (to see the app lose it). */
    async killServer() {
      if (running()) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGKILL");
        await exited;
      }
      if (mock) {
        await mock.close();
        mock = null;
      }
    },
    async stop() {
      if (running()) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      await mock?.close();
      await fake.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium with a fresh profile; returns { context, close() }. */
export async function launchBrowser(options = {}) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "conversa-e2e-profile-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: options.viewport ?? { width: 1280, height: 800 },
    deviceScaleFactor: options.deviceScaleFactor ?? 1,
    colorScheme: options.colorScheme ?? "dark",
    permissions: ["clipboard-read", "clipboard-write"],
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The stack and a browser for one test file: started before its tests, stopped after them.
 * `open(hash)` opens the app in a new page (page errors collected in `page.errors`) and waits
 * for the composer.
 */
export function stackForTests({ timeout = 45_000 } = {}) {
  const t = {
    stack: null,
    browser: null,
    async open(hash = "") {
      const page = await t.browser.context.newPage();
      page.setDefaultTimeout(timeout);
      const errors = [];
      page.on("pageerror", (e) => errors.push(e));
      page.errors = errors;
      await page.goto(`${t.stack.baseUrl}/${hash}`);
      await page.waitForSelector("#composer-input");
      return page;
    },
  };
  before(async () => {
    t.stack = await startStack();
    t.browser = await launchBrowser();
  });
  after(async () => {
    await t.browser?.close();
    await t.stack?.stop();
  });
  return t;
}

/** A small valid PDF with one page per entry of `pages` (each a list of lines). */
export function makePagedPdf(pages) {
  const esc = (s) => s.replace(/[\\()]/g, (c) => "\\" + c);
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    `<< /Type /Pages /Kids [${pages.map((_, i) => `${4 + 2 * i} 0 R`).join(" ")}] /Count ${pages.length} >>`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
  ];
  pages.forEach((lines, i) => {
    const content =
      "BT /F1 12 Tf 72 720 Td 16 TL\n" + lines.map((l, j) => `${j ? "T* " : ""}(${esc(l)}) Tj`).join("\n") + "\nET\n";
    objects.push(
      `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents ${5 + 2 * i} 0 R /Resources << /Font << /F1 3 0 R >> >> >>`,
      `<< /Length ${Buffer.byteLength(content, "latin1")} >>\nstream\n${content}endstream`,
    );
  });
  let out = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
  const offsets = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, "latin1"));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xrefAt = Buffer.byteLength(out, "latin1");
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xrefAt}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}

/** A small valid one-page PDF whose text is `lines` (Helvetica, WinAnsi), with a correct xref. */
export function makePdf(lines) {
  const esc = (s) => s.replace(/[\\()]/g, (c) => "\\" + c);
  const content =
    "BT /F1 12 Tf 72 720 Td 16 TL\n" + lines.map((l, i) => `${i ? "T* " : ""}(${esc(l)}) Tj`).join("\n") + "\nET\n";
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${Buffer.byteLength(content, "latin1")} >>\nstream\n${content}endstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
  ];
  let out = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
  const offsets = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, "latin1"));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xrefAt = Buffer.byteLength(out, "latin1");
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xrefAt}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}
