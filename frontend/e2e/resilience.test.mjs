// End-to-end: a rate limit counts down from Retry-After; the server's refusal of a file shows on
// its chip; losing the server shows a banner.

import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, startStack } from "./harness.mjs";

let stack;
let browser;

before(async () => {
  stack = await startStack({ CONVERSA_RATE_LIMIT_PER_MINUTE: "1", CONVERSA_MAX_UPLOAD_BYTES: "2000" });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

it("counts down a rate limit in plain words", async () => {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  await page.goto(`${stack.baseUrl}/`);
  const idle = () => page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
  // The limit is one turn per minute; a window boundary may let one more through, so send
  // until one is refused.
  const note = page.locator(".msg-assistant .msg-note-error").last();
  for (let i = 0; i < 3 && (await note.count()) === 0; i++) {
    await page.fill("#composer-input", `message ${i}`);
    await page.press("#composer-input", "Enter");
    await idle();
  }
  await note.waitFor();
  const first = await note.textContent();
  assert.match(first, /too quickly\. You can send again in \d+ s\./);
  assert.equal(await note.locator("button.retry").isDisabled(), true);
  assert.match(await page.textContent("#composer-status"), /You can send again in \d+ s/);
  const n1 = Number(/in (\d+) s/.exec(first)[1]);
  await page.waitForFunction((n) => {
    const m = /in (\d+) s/.exec(document.querySelector(".msg-assistant .msg-note-error:last-of-type .msg-note-text")?.textContent ?? "");
    return m && Number(m[1]) < n;
  }, n1, { timeout: 5000 });
  await page.close();
});

it("shows the server's refusal of a file on its chip", async () => {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  await page.goto(`${stack.baseUrl}/`);
  // Over the server's limit (2000 bytes here), under the client's (10 MB from config.json).
  await page.setInputFiles("#file-input", { name: "big.csv", mimeType: "text/csv", buffer: Buffer.from("a,b\n".repeat(1000)) });
  const big = page.locator("#chips .chip", { hasText: "big.csv" });
  await page.waitForSelector("#chips .chip[data-state=failed]");
  assert.match(await big.locator(".chip-status").textContent(), /Failed: That file is too large/);
  // Claims to be a PDF, is not.
  await page.setInputFiles("#file-input", { name: "fake.pdf", mimeType: "application/pdf", buffer: Buffer.from("just some text, not a PDF") });
  const fake = page.locator("#chips .chip", { hasText: "fake.pdf" });
  await page.waitForFunction(() => [...document.querySelectorAll("#chips .chip[data-state=failed]")].length === 2);
  assert.match(await fake.locator(".chip-status").textContent(), /Failed: That file type isn't supported, or the file's content doesn't match its type/);
  // Failed files are not sent; with no text, Send stays disabled.
  assert.equal(await page.isDisabled("#send"), true);
  if (process.env.E2E_DEBUG) console.log(await page.locator("#chips").innerText());
  await page.close();
});

it("shows a banner when the server can't be reached", async () => {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  await page.goto(`${stack.baseUrl}/`);
  await page.waitForSelector("#composer-input");
  assert.equal(await page.isHidden("#banner"), true);
  await stack.killServer();
  await page.fill("#composer-input", "anyone there?");
  await page.press("#composer-input", "Enter");
  await page.waitForSelector("#banner:not([hidden])");
  assert.match(await page.textContent("#banner"), /Can't reach the server\. Retrying in \d+ s/);
  const note = page.locator(".msg-assistant .msg-note-error").last();
  await note.waitFor();
  assert.match(await note.textContent(), /Couldn't reach the server/);
  await page.close();
});
