// End-to-end: an answer that cites a passage of an uploaded PDF shows `[n]` as a link (never
// inside code); the link opens the file's text at the cited page with the snippet highlighted,
// live and after a reload. The fake provider reads the passage number from the prompt.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { makePagedPdf, stackForTests } from "./harness.mjs";

const TIMEOUT = 45_000;
const t = stackForTests({ timeout: TIMEOUT });
const openApp = (hash) => t.open(hash);

async function waitIdle(page) {
  await page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
}

/** Follows the answer's citation link and checks the viewer: page 3, the snippet highlighted. */
async function followCitation(page) {
  const answer = page.locator(".msg-assistant").last();
  const link = answer.locator("a.cite");
  assert.equal(await link.count(), 1, "one marker outside code is a link");
  assert.match(await link.getAttribute("aria-label"), /^Source \d+: codes\.pdf, page 3$/);
  assert.equal(await answer.locator("code a.cite").count(), 0, "no link inside code");
  assert.match(await answer.locator("code").textContent(), /^arr\[\d+\]$/);
  await link.click();
  const dialog = page.locator("#source-dialog");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await page.locator("#source-heading").textContent(), "codes.pdf");
  assert.match(await page.locator("#source-place").textContent(), /page 3$/);
  const mark = page.locator("#source-text mark.source-snippet");
  await mark.waitFor();
  assert.match(await mark.textContent(), /The launch code for the vault is KESTREL-5150\./);
  const shown = await page.locator("#source-text").textContent();
  assert.match(shown, /Page three opens with the codes\./, "the cited page is shown");
  assert.doesNotMatch(shown, /Page one is the cover\./, "only that page");
  await page.click("#source-close");
  await dialog.waitFor({ state: "hidden" });
}

describe("citations in the browser", () => {
  it("links [n] to the cited page of the file, with the snippet highlighted, live and after a reload", async () => {
    const page = await openApp();
    const pdf = makePagedPdf([
      ["Page one is the cover."],
      ["Page two lists the staff."],
      ["Page three opens with the codes.", "The launch code for the vault is KESTREL-5150.", "It changes every year."],
      ["Page four is the index."],
    ]);
    await page.setInputFiles("#file-input", { name: "codes.pdf", mimeType: "application/pdf", buffer: pdf });
    await page.waitForSelector("#chips .chip[data-state=ready]");
    await page.fill("#composer-input", "What is the launch code? CITE:KESTREL-5150");
    await page.press("#composer-input", "Enter");
    await page.waitForFunction(() => {
      const el = [...document.querySelectorAll(".msg-assistant .msg-content")].pop();
      return el && /KESTREL-5150/.test(el.textContent);
    });
    await waitIdle(page);
    await page.locator(".msg-assistant").last().locator("a.cite").waitFor();
    await followCitation(page);

    // Stored with the answer: the same link after a reload.
    const id = await page.evaluate(() => decodeURIComponent(/^#\/c\/(.+)$/.exec(location.hash)?.[1] ?? ""));
    assert.ok(id, "the URL names the conversation");
    const again = await openApp(`#/c/${encodeURIComponent(id)}`);
    await again.locator(".msg-assistant").last().locator("a.cite").waitFor();
    await followCitation(again);
    assert.deepEqual([...page.errors, ...again.errors], []);
  });
});
