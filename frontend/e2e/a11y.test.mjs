// End-to-end: axe-core finds no serious or critical accessibility problems (labels, roles,
// contrast, …) on a conversation, in both themes and on a phone screen.

import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import fs from "node:fs";
import { launchBrowser, makePdf, startStack } from "./harness.mjs";

const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
let stack;
let browser;
let url;

before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  await page.goto(`${stack.baseUrl}/`);
  await page.setInputFiles("#file-input", { name: "report.pdf", mimeType: "application/pdf", buffer: makePdf(["ZEBRA-1 is here."]) });
  await page.waitForSelector("#chips .chip[data-state=ready]");
  await page.fill("#composer-input", "SHOWCASE please");
  await page.press("#composer-input", "Enter");
  await page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
  await page.waitForSelector(".msg-assistant .katex");
  url = page.url();
  await page.close();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

async function audit(theme, viewport, prepare) {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  if (viewport) await page.setViewportSize(viewport);
  await page.goto(url);
  await page.evaluate((t) => localStorage.setItem("conversa-theme", t), theme);
  await page.reload();
  await page.waitForSelector(".msg-assistant .katex");
  await page.waitForTimeout(1500); // let the title highlight fade
  if (prepare) await prepare(page);
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ["violations"], rules: { region: { enabled: false } } }),
  );
  await page.close();
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  return serious.map((v) => `${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
}

it("dark theme has no serious accessibility violations", async () => {
  assert.deepEqual(await audit("dark"), []);
});

it("light theme has no serious accessibility violations", async () => {
  assert.deepEqual(await audit("light"), []);
});

it("a phone screen has no serious accessibility violations", async () => {
  assert.deepEqual(await audit("dark", { width: 390, height: 844 }), []);
});

it("a new chat with attachments and an error, and the open drawer, have no serious violations", async () => {
  const prepare = async (page) => {
    await page.click("#new-chat");
    await page.setInputFiles("#file-input", { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from("# hi") });
    await page.setInputFiles("#file-input", { name: "tool.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ") });
    await page.waitForSelector("#chips .chip[data-state=ready]");
    await page.waitForSelector("#composer-error:not([hidden])");
  };
  assert.deepEqual(await audit("light", null, prepare), []);
  assert.deepEqual(await audit("dark", null, prepare), []);
  const drawer = async (page) => {
    await page.click("#menu");
    await page.waitForSelector("#conv-list", { state: "visible" });
    await page.waitForTimeout(300);
  };
  assert.deepEqual(await audit("light", { width: 390, height: 844 }, drawer), []);
});
