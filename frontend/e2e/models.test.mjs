// End-to-end: the model picker. The server offers the models of a models file (two on the fake
// provider, one that reads images and one that does not); a chat picks one, the provider gets that
// model, the choice is remembered per conversation, and an image attached for a model without
// vision gets a note.

import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { TITLE_MODEL } from "./fake-openai.mjs";
import { launchBrowser, startStack } from "./harness.mjs";

const TIMEOUT = 45_000;
let stack;
let browser;
let dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "conversa-e2e-models-"));
  const file = path.join(dir, "models.json");
  stack = await startStack((fake) => {
    fs.writeFileSync(
      file,
      JSON.stringify([
        { id: "sharp", provider: "openai", model: "sharp-model", base_url: fake.baseUrl, name: "Sharp", vision: true, default: true },
        { id: "plain", provider: "openai", model: "plain-model", base_url: fake.baseUrl, name: "Plain", vision: false },
        { id: TITLE_MODEL, provider: "openai", base_url: fake.baseUrl, name: "Titles" },
      ]),
    );
    return { CONVERSA_MODELS_FILE: file };
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function openApp(hash = "") {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`${stack.baseUrl}/${hash}`);
  await page.waitForSelector("#model-pick:not([hidden])");
  return page;
}

async function waitIdle(page) {
  await page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
}

/** Sends `text` and returns the model the provider was asked for it. */
async function send(page, text) {
  await page.fill("#composer-input", text);
  await page.press("#composer-input", "Enter");
  await page.waitForFunction((t) => [...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent.includes(t), text);
  await waitIdle(page);
  const asked = stack.fake.requests.filter((r) => r.stream && r.model !== TITLE_MODEL && JSON.stringify(r.messages).includes(text));
  assert.equal(asked.length, 1, `one request for ${text}`);
  return asked[0].model;
}

async function conversationId(page) {
  const m = /^#\/c\/(.+)$/.exec(await page.evaluate(() => location.hash));
  return m ? decodeURIComponent(m[1]) : null;
}

it("lists the models with their provider and whether they read images", async () => {
  const listed = await (await fetch(`${stack.baseUrl}/api/models`)).json();
  assert.deepEqual(
    listed.items.filter((m) => m.id !== "local").map((m) => [m.id, m.provider, m.vision, m.default]),
    [["sharp", "openai", true, true], ["plain", "openai", false, false], [TITLE_MODEL, "openai", false, false]],
  );
  const page = await openApp();
  const options = await page.$$eval("#model-picker option", (os) => os.map((o) => [o.value, o.textContent]));
  assert.deepEqual(options.slice(0, 2), [
    ["sharp", "Sharp · OpenAI-compatible · reads images"],
    ["plain", "Plain · OpenAI-compatible"],
  ]);
  assert.equal(await page.inputValue("#model-picker"), "sharp");
  await page.close();
});

it("answers with the picked model and remembers the pick per conversation", async () => {
  const page = await openApp();
  await page.selectOption("#model-picker", "plain");
  assert.equal(await send(page, "first question PICK-A"), "plain-model");
  const first = await conversationId(page);
  assert.ok(first);

  // Reloaded, the conversation still answers with its model.
  await page.reload();
  await page.waitForSelector("#model-pick:not([hidden])");
  await page.waitForFunction(() => document.getElementById("model-picker").value === "plain");
  assert.equal(await send(page, "follow-up PICK-B"), "plain-model");

  // A new chat starts with the last pick; another pick there is that conversation's own.
  await page.click("#new-chat");
  assert.equal(await page.inputValue("#model-picker"), "plain");
  await page.selectOption("#model-picker", "sharp");
  assert.equal(await send(page, "second chat PICK-C"), "sharp-model");
  const second = await conversationId(page);
  assert.notEqual(second, first);

  await page.evaluate((id) => (location.hash = `#/c/${encodeURIComponent(id)}`), first);
  await page.waitForFunction(() => document.getElementById("model-picker").value === "plain");
  await page.evaluate((id) => (location.hash = `#/c/${encodeURIComponent(id)}`), second);
  await page.waitForFunction(() => document.getElementById("model-picker").value === "sharp");
  await page.close();
});

it("notes an attached image that the picked model cannot see", async () => {
  const page = await openApp();
  await page.selectOption("#model-picker", "sharp");
  // 1×1 PNG
  const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");
  await page.setInputFiles("#file-input", { name: "chart.png", mimeType: "image/png", buffer: png });
  await page.waitForSelector("#chips .chip");
  assert.equal(await page.isHidden("#model-note"), true);
  await page.selectOption("#model-picker", "plain");
  await page.waitForSelector("#model-note:not([hidden])");
  assert.match(await page.textContent("#model-note"), /Plain can't see images: chart\.png/);
  await page.selectOption("#model-picker", "sharp");
  await page.waitForSelector("#model-note", { state: "hidden" });
  await page.close();
});

it("refuses a model that is not offered, naming the ones that are", async () => {
  const res = await fetch(`${stack.baseUrl}/api/chat/send`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: "hi", model: "gpt-99" }),
  });
  assert.equal(res.status, 422);
  const body = await res.json();
  assert.equal(body.error.code, "unprocessable");
  assert.match(body.error.message, /sharp/);
  assert.match(body.error.message, /plain/);
});
