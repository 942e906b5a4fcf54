// End-to-end: a file over the inline limit is answered 202 `processing`; the chip polls
// GET /api/files/{id} until it is ready, and the answer then quotes it.

import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, makePdf, startStack } from "./harness.mjs";

let stack;
let browser;

before(async () => {
  // Every upload over 200 bytes becomes a background job.
  stack = await startStack({ CONVERSA_INLINE_MAX_BYTES: "200" });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

it("polls a file that is processed in the background", async () => {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  await page.goto(`${stack.baseUrl}/`);
  await page.waitForSelector("#composer-input");
  const states = [];
  await page.exposeFunction("__chipState", (s) => states.push(s));
  await page.evaluate(() => {
    new MutationObserver(() => {
      for (const c of document.querySelectorAll("#chips .chip")) window.__chipState(c.dataset.state);
    }).observe(document.getElementById("chips"), { subtree: true, childList: true, attributes: true });
  });
  const polls = [];
  page.on("request", (r) => {
    if (r.method() === "GET" && /\/api\/files\/[^/]+$/.test(new URL(r.url()).pathname)) polls.push(r.url());
  });
  const uploaded = page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith("/api/files"));
  const pdf = makePdf(["Background job", "ZEBRA-77 arrived through the job queue.", "More text to pass the limit."]);
  await page.setInputFiles("#file-input", { name: "job.pdf", mimeType: "application/pdf", buffer: pdf });
  const res = await uploaded;
  assert.equal(res.status(), 202);
  assert.equal((await res.json()).status, "processing");
  await page.waitForSelector("#chips .chip[data-state=ready]", { timeout: 60_000 });
  assert.ok(states.includes("processing"), `the chip showed processing (saw ${[...new Set(states)].join(", ")})`);
  assert.ok(polls.length >= 1, "the client polled the file");

  await page.fill("#composer-input", "What came through?");
  await page.press("#composer-input", "Enter");
  await page.waitForFunction(() => /ZEBRA-77/.test([...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent ?? ""));
  await page.close();
});
