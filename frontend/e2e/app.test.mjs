// End-to-end: the built frontend against the real server and a fake model provider, in
// headless Chromium. Run with `npm run test:e2e` (see README for the environment variables).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { makePdf, stackForTests } from "./harness.mjs";

// Generous: the machines that run this are often busy compiling.
const TIMEOUT = 45_000;
const t = stackForTests({ timeout: TIMEOUT });
const openApp = (hash) => t.open(hash);

async function sendMessage(page, text) {
  await page.fill("#composer-input", text);
  await page.press("#composer-input", "Enter");
}

async function waitIdle(page) {
  await page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
}

function lastAnswer(page) {
  return page.locator(".msg-assistant").last();
}

async function currentId(page) {
  const hash = await page.evaluate(() => location.hash);
  const m = /^#\/c\/(.+)$/.exec(hash);
  return m ? decodeURIComponent(m[1]) : null;
}

async function api(path, init) {
  return fetch(`${t.stack.baseUrl}${path}`, init);
}

/** One conversation of `messages`, each sent through the API and answered in full: its id. */
async function conversationOf(messages) {
  let conversation = null;
  for (const message of messages) {
    const body = { message };
    if (conversation) body.conversation_id = conversation;
    const res = await api("/api/chat/send", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    assert.match(text, /event: done/);
    conversation ??= /"conversation_id":\s*"([^"]+)"/.exec(text)[1];
  }
  return conversation;
}

/** No element anywhere in the document carries an event handler attribute or a javascript: URL. */
async function assertDomInert(page) {
  const bad = await page.evaluate(() => {
    const found = [];
    for (const el of document.querySelectorAll("*")) {
      for (const a of el.attributes) {
        const v = a.value.replace(/[\u0000-\u0020]/g, "").toLowerCase();
        if (a.name.toLowerCase().startsWith("on")) found.push(`${el.tagName} ${a.name}`);
        if (/^(javascript|vbscript|data:text)/.test(v)) found.push(`${el.tagName} ${a.name}=${a.value}`);
      }
    }
    for (const el of document.querySelectorAll(".message-list script, .message-list iframe, .message-list svg:not(.icon), .message-list style, .message-list form, .message-list input")) {
      found.push(`element ${el.tagName}`);
    }
    return found;
  });
  assert.deepEqual(bad, []);
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "a script from the model ran");
}

describe("conversa in the browser", () => {
  let pdfConversation = null;

  it("shows the model from /health", async () => {
    const health = await (await api("/health")).json();
    const page = await openApp();
    if (typeof health.model === "string" && health.model) {
      await page.waitForSelector("#model:not([hidden])");
      assert.equal(await page.textContent("#model"), health.model);
    } else {
      assert.equal(await page.isHidden("#model"), true);
    }
    await page.close();
  });

  it("answers a question about an uploaded PDF, streaming a quote of it, and titles the conversation", async () => {
    const page = await openApp();
    const pdf = makePdf(["Quarterly report", "ZEBRA-42 revenue grew by 17 percent in the fourth quarter.", "End of report"]);
    await page.setInputFiles("#file-input", { name: "report.pdf", mimeType: "application/pdf", buffer: pdf });
    const chip = page.locator("#chips .chip");
    await chip.waitFor();
    assert.match(await chip.textContent(), /report\.pdf/);
    assert.match(await chip.textContent(), /PDF/);
    await page.waitForSelector("#chips .chip[data-state=ready]");

    await sendMessage(page, "What does the report say about revenue?");
    // The question shows at once, with its attachment.
    const user = page.locator(".msg-user").last();
    await user.waitFor();
    assert.match(await user.textContent(), /What does the report say about revenue\?/);
    assert.match(await user.textContent(), /report\.pdf/);
    assert.equal(await page.locator("#chips .chip").count(), 0, "chips are cleared after sending");

    // The answer streams in and quotes the document.
    await page.waitForFunction(() => {
      const el = [...document.querySelectorAll(".msg-assistant .msg-content")].pop();
      return el && /ZEBRA-42/.test(el.textContent);
    });
    await waitIdle(page);
    const answer = await lastAnswer(page).locator(".msg-content").textContent();
    assert.match(answer, /The document says: .*ZEBRA-42 revenue grew by 17 percent/);
    assert.equal(await lastAnswer(page).locator(".msg-content").getAttribute("aria-live"), "polite");

    // Its receipt: the model on the answer, the tokens, cost and times on hover.
    const receipt = lastAnswer(page).locator(".msg-receipt");
    await receipt.waitFor();
    const done = await receipt.getAttribute("title");
    assert.match(done, /^Model: \S+ \(openai\)\nTokens: [\d,]+ in, [\d,]+ out\nCost: .+\n(First token: .+\n)?Duration: /);

    // The conversation is in the URL and in the sidebar, with its automatic title.
    const id = await currentId(page);
    assert.ok(id, "the URL names the conversation");
    pdfConversation = id;
    const item = page.locator(`#conv-list li[data-id="${id}"]`);
    await item.waitFor();
    await page.waitForFunction(
      (cid) => document.querySelector(`#conv-list li[data-id="${cid}"] .conv-title`)?.textContent === "Zebra Revenue Question",
      id,
    );
    assert.equal(await page.textContent("#conv-title"), "Zebra Revenue Question");

    // The attachment links to the original bytes.
    const link = user.locator("a.file-name");
    const href = await link.getAttribute("href");
    assert.match(href, /\/api\/files\/[^/]+\/download$/);
    const res = await api(href);
    assert.equal(res.status, 200);
    assert.equal(Buffer.from(await res.arrayBuffer()).subarray(0, 5).toString(), "%PDF-");
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("restores the conversation on reload", async () => {
    assert.ok(pdfConversation, "needs the PDF conversation");
    const page = await openApp(`#/c/${encodeURIComponent(pdfConversation)}`);
    await page.waitForSelector(".msg-assistant");
    assert.equal(await page.locator(".msg-user").count(), 1);
    assert.match(await page.locator(".msg-user").textContent(), /report\.pdf/);
    assert.match(await lastAnswer(page).textContent(), /ZEBRA-42/);
    // The stored answer keeps its receipt.
    assert.match(await lastAnswer(page).locator(".msg-receipt").getAttribute("title"), /Tokens: [\d,]+ in/);
    assert.equal(await page.textContent("#conv-title"), "Zebra Revenue Question");
    assert.equal(
      await page.getAttribute(`#conv-list li[data-id="${pdfConversation}"] .conv-link`, "aria-current"),
      "page",
    );
    await page.reload();
    await page.waitForSelector(".msg-assistant");
    assert.match(await lastAnswer(page).textContent(), /ZEBRA-42/);

    // A follow-up goes to the same conversation.
    await sendMessage(page, "And what else? TITLE:Ignored");
    await waitIdle(page);
    assert.equal(await currentId(page), pdfConversation);
    assert.equal(await page.locator(".msg-user").count(), 2);
    await page.close();
  });

  it("shows the title from the stream's title event", async () => {
    const page = await openApp();
    // Hold back the re-read of the conversation after `done`, so only the SSE event can show the title.
    await page.route(/\/api\/conversations\/[^/?]+$/, async (route) => {
      if (route.request().method() === "GET") await new Promise((r) => setTimeout(r, 8000));
      await route.continue().catch(() => undefined);
    });
    const started = Date.now();
    await sendMessage(page, "A MEDIUM_STREAM answer please TITLE:Live_title");
    await page.waitForFunction(
      () => [...document.querySelectorAll("#conv-list .conv-title")].some((e) => e.textContent === "Live title"),
      null,
      { timeout: 7000 },
    );
    assert.ok(Date.now() - started < 8000, "the title came before the held-back re-read");
    assert.equal(await page.textContent("#conv-title"), "Live title");
    await page.unrouteAll({ behavior: "ignoreErrors" });
    await page.close();
  });

  it("renames a conversation inline", async () => {
    const page = await openApp();
    await sendMessage(page, "Hello there TITLE:Rename");
    await waitIdle(page);
    const id = await currentId(page);
    const item = page.locator(`#conv-list li[data-id="${id}"]`);
    await item.hover();
    await item.locator(".conv-rename").click();
    const input = item.locator(".conv-rename-input");
    await input.fill("My renamed chat");
    await input.press("Enter");
    await page.waitForFunction(
      (cid) => document.querySelector(`#conv-list li[data-id="${cid}"] .conv-title`)?.textContent === "My renamed chat",
      id,
    );
    assert.equal(await page.textContent("#conv-title"), "My renamed chat");
    assert.equal(await item.locator(".conv-rename").getAttribute("aria-label"), "Rename “My renamed chat”");
    const conv = await (await api(`/api/conversations/${encodeURIComponent(id)}`)).json();
    assert.equal(conv.title, "My renamed chat");

    // Escape cancels; an over-long title is refused inline.
    await item.hover();
    await item.locator(".conv-rename").click();
    await item.locator(".conv-rename-input").fill("Not saved");
    await item.locator(".conv-rename-input").press("Escape");
    assert.equal(await item.locator(".conv-title").textContent(), "My renamed chat");
    await page.close();
  });

  it("searches conversations", async () => {
    const page = await openApp();
    await sendMessage(page, "Tell me about giraffes TITLE:Giraffes");
    await waitIdle(page);
    await page.fill("#search", "zebra");
    await page.waitForFunction(() => {
      const titles = [...document.querySelectorAll("#conv-list .conv-title")].map((e) => e.textContent);
      return titles.length > 0 && titles.every((t) => /zebra/i.test(t));
    });
    // Matching messages are listed too, each a link to its conversation.
    await page.fill("#search", "giraffes");
    // (Entries are written just after a message is stored: the list may need another keystroke.)
    await page.waitForFunction(async () => {
      const found = () =>
        [...document.querySelectorAll("#search-hits:not([hidden]) .search-hit-snippet")].some((e) => /giraffes/i.test(e.textContent));
      for (let i = 0; i < 20 && !found(); i++) {
        const input = document.querySelector("#search");
        input.value = i % 2 ? "giraffes" : "about giraffes";
        input.dispatchEvent(new Event("input"));
        await new Promise((r) => setTimeout(r, 400));
      }
      return found();
    });
    const hit = page.locator("#search-hit-list .search-hit-link", { hasText: /giraffes/i }).first();
    assert.match(await hit.getAttribute("href"), /^#\/c\//);
    await page.fill("#search", "no-such-thing-xyz");
    await page.waitForFunction(() => document.querySelectorAll("#conv-list li").length === 0);
    assert.match(await page.textContent("#conv-status"), /No conversations match/);
    await page.fill("#search", "");
    await page.waitForFunction(() => document.querySelectorAll("#conv-list li").length >= 3);
    assert.equal(await page.isHidden("#search-hits"), true);
    await page.close();
  });

  it("stops an answer midway", async () => {
    const page = await openApp();
    await sendMessage(page, "Please SLOW_STREAM a long answer");
    await page.waitForFunction(() => /word5\b/.test([...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent ?? ""));
    assert.equal(await page.isVisible("#stop"), true);
    await page.click("#stop");
    await waitIdle(page);
    const answer = lastAnswer(page);
    await answer.locator(".msg-note").waitFor();
    assert.match(await answer.locator(".msg-note").textContent(), /Stopped/);
    const text1 = await answer.locator(".msg-content").textContent();
    await page.waitForTimeout(600);
    const text2 = await answer.locator(".msg-content").textContent();
    assert.equal(text1, text2, "no tokens after Stop");
    assert.doesNotMatch(text2, /word400/);

    // Esc stops too.
    await sendMessage(page, "Again SLOW_STREAM please");
    await page.waitForFunction(() => /word3\b/.test([...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent ?? ""));
    await page.keyboard.press("Escape");
    await waitIdle(page);
    assert.match(await lastAnswer(page).locator(".msg-note").textContent(), /Stopped/);
    await page.close();
  });

  it("renders tables, math and highlighted code with a copy button", async () => {
    const page = await openApp();
    await sendMessage(page, "SHOWCASE please");
    await waitIdle(page);
    const answer = lastAnswer(page);
    assert.equal(await answer.locator("table tbody tr").count(), 2);
    await answer.locator(".math-inline .katex").first().waitFor();
    await answer.locator(".math-display .katex-display").waitFor();
    assert.ok((await answer.locator(".hljs-keyword").count()) > 0);
    await answer.locator(".copy-code").click();
    await page.waitForFunction(() => document.querySelector(".msg-assistant:last-of-type .copy-code")?.textContent === "Copied");
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(copied, /^def growth\(rate: float, quarters: int\) -> float:/);
    // The whole answer copies as its Markdown source.
    await answer.locator(".copy-answer").click();
    await page.waitForFunction(() => [...document.querySelectorAll(".copy-answer")].pop()?.textContent === "Copied");
    const source = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(source, /^Here is a summary of \*\*Q4\*\* by region:/);
    assert.match(source, /\$\$\n/);
    await page.close();
  });

  it("keeps malicious model output inert", async () => {
    const page = await openApp();
    await sendMessage(page, "Show me MALICIOUS_OUTPUT now");
    await waitIdle(page);
    const answer = lastAnswer(page);
    assert.match(await answer.textContent(), /dangerous/);
    await assertDomInert(page);
    const safe = answer.locator('a[href="https://example.com/docs"]');
    assert.equal(await safe.getAttribute("rel"), "noopener noreferrer");
    assert.equal(await safe.getAttribute("target"), "_blank");
    // Clicking the neutralised links does nothing either.
    for (const a of await answer.locator("a:not([href])").all()) await a.click({ force: true }).catch(() => undefined);
    await page.waitForTimeout(300);
    await assertDomInert(page);

    // The stored answer, rendered from history, is just as inert.
    await page.reload();
    await page.waitForSelector(".msg-assistant");
    await page.waitForTimeout(300);
    await assertDomInert(page);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("shows a provider failure in plain words with Retry", async () => {
    const page = await openApp();
    await sendMessage(page, "FAIL_UPSTREAM please");
    await waitIdle(page);
    const note = lastAnswer(page).locator(".msg-note-error");
    await note.waitFor();
    assert.match(await note.textContent(), /model failed/i);
    assert.equal(await note.locator("button.retry").isVisible(), true);
    await note.locator("button.retry").click();
    await waitIdle(page);
    assert.equal(await page.locator(".msg-user").count(), 1, "Retry replaces the failed turn");
    await page.close();
  });

  it("refuses unsupported and oversized files before uploading", async () => {
    const page = await openApp();
    await page.setInputFiles("#file-input", { name: "tool.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ") });
    await page.waitForSelector("#composer-error:not([hidden])");
    assert.match(await page.textContent("#composer-error"), /tool\.exe: this file type isn't supported/);
    await page.setInputFiles("#file-input", { name: "huge.csv", mimeType: "text/csv", buffer: Buffer.alloc(10 * 1024 * 1024 + 1, 0x61) });
    await page.waitForFunction(() => /huge\.csv is 10 MB; the limit is 10 MB/.test(document.getElementById("composer-error").textContent));
    assert.equal(await page.locator("#chips .chip").count(), 0);

    // A supported text file uploads and can be removed again.
    await page.setInputFiles("#file-input", { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from("# Notes\nZEBRA-7 is a note.") });
    await page.waitForSelector("#chips .chip[data-state=ready]");
    await page.click("#chips .chip-remove");
    assert.equal(await page.locator("#chips .chip").count(), 0);
    await page.close();
  });

  it("attaches files by drop and paste, with image previews and upload progress", async () => {
    const page = await openApp();
    // 1×1 PNG
    const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
      for (const type of ["dragenter", "dragover", "drop"]) {
        document.getElementById("messages").dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
      }
    }, png);
    await page.waitForSelector("#chips .chip[data-state=ready]");
    assert.match(await page.getAttribute("#chips .chip img.chip-thumb", "src"), /^blob:/);
    assert.equal(await page.isHidden("#drop-overlay"), true);

    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], "image.png", { type: "image/png" }));
      document.getElementById("composer-input").dispatchEvent(new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: dt }));
    }, png);
    await page.waitForFunction(() => document.querySelectorAll("#chips .chip[data-state=ready]").length === 2);
    assert.match(await page.locator("#chips .chip").nth(1).textContent(), /pasted-.*\.png/);

    // A slow upload shows its progress bar.
    const cdp = await t.browser.context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 100 * 1024 });
    await page.setInputFiles("#file-input", { name: "big.csv", mimeType: "text/csv", buffer: Buffer.from("a,b\n".repeat(75_000)) });
    await page.waitForFunction(() => {
      const chip = [...document.querySelectorAll("#chips .chip")].find((c) => /big\.csv/.test(c.textContent));
      return chip && chip.dataset.state === "uploading" && chip.querySelector("progress.chip-progress");
    });
    assert.equal(await page.isDisabled("#send"), true, "Send waits for uploads");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await page.waitForFunction(() => document.querySelectorAll("#chips .chip").length === 3 && [...document.querySelectorAll("#chips .chip")].every((c) => c.dataset.state === "ready" || c.dataset.state === "failed"), null, { timeout: 60_000 });

    await sendMessage(page, "What is in these pictures?");
    await waitIdle(page);
    const user = page.locator(".msg-user").last();
    assert.equal(await user.locator(".msg-file").count(), 3);
    assert.equal(await user.locator("img.file-thumb").count(), 2);
    await page.close();
  });

  it("stops following the answer when the reader scrolls up", async () => {
    const page = await openApp();
    await page.setViewportSize({ width: 1000, height: 500 });
    await sendMessage(page, "Give me a long SLOW_STREAM answer");
    // The view follows the answer as it grows past the window.
    await page.waitForFunction(() => {
      const m = document.getElementById("messages");
      return m.scrollHeight > m.clientHeight + 200 && m.scrollHeight - m.scrollTop - m.clientHeight < 60;
    }, null, { timeout: 30_000 });
    await page.mouse.move(500, 250);
    await page.mouse.wheel(0, -400);
    await page.waitForTimeout(300);
    const top1 = await page.evaluate(() => document.getElementById("messages").scrollTop);
    await page.waitForTimeout(800);
    const top2 = await page.evaluate(() => document.getElementById("messages").scrollTop);
    assert.equal(top1, top2, "the view stays where the reader put it");
    assert.equal(await page.isVisible("#jump"), true);
    await page.click("#jump");
    await page.waitForFunction(() => {
      const m = document.getElementById("messages");
      return m.scrollHeight - m.scrollTop - m.clientHeight < 60;
    });
    await page.click("#stop");
    await waitIdle(page);
    await page.close();
  });

  it("opens a long conversation at its newest messages and puts the older ones above them", async () => {
    const conversation = await conversationOf(Array.from({ length: 15 }, (_, i) => `Question number ${i}`));
    const page = await openApp(`#/c/${encodeURIComponent(conversation)}`);
    // Every message arrives, in order, each answer rendered, and the view is at the bottom.
    await page.waitForFunction(
      () =>
        document.querySelectorAll("#message-list .msg").length === 30 &&
        !document.querySelector("#message-list .msg-content[aria-busy]"),
    );
    const questions = await page.locator(".msg-user .msg-text").allTextContents();
    assert.deepEqual(questions, Array.from({ length: 15 }, (_, i) => `Question number ${i}`));
    const roles = await page.evaluate(() => [...document.querySelectorAll("#message-list .msg")].map((m) => m.classList.contains("msg-user") ? "u" : "a").join(""));
    assert.equal(roles, "ua".repeat(15));
    await page.waitForFunction(() => {
      const m = document.getElementById("messages");
      return m.scrollHeight > m.clientHeight && m.scrollHeight - m.scrollTop - m.clientHeight < 2;
    });
    assert.equal(await page.isVisible("#jump"), false);
    await page.close();
  });

  it("renders a long conversation's older answers a slice at a time, those scrolled to first, without moving the view", async () => {
    const turns = 60;
    // Each answer is a section of the benchmark's long answer: headings, code, tables, math.
    const conversation = await conversationOf(Array.from({ length: turns }, (_, i) => `BENCH_HISTORY:${i}`));
    const page = await openApp();
    // A slower CPU, so that rendering every answer takes long enough to see its order.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    await page.goto(`${t.stack.baseUrl}/#/c/${encodeURIComponent(conversation)}`);
    const busy = () => page.evaluate(() => document.querySelectorAll("#message-list .msg-content[aria-busy]").length);
    // The newest answer is rendered first, in view at the bottom.
    await page.waitForFunction(() => {
      const body = [...document.querySelectorAll("#message-list .msg-assistant .msg-content")].pop();
      const m = document.getElementById("messages");
      return body && !body.hasAttribute("aria-busy") && body.querySelector("h2") && m.scrollHeight - m.scrollTop - m.clientHeight < 2;
    });
    // Every message is put in the page, the older ones in slices; answers not rendered yet are
    // busy, empty places of about their height.
    await page.waitForFunction((n) => document.querySelectorAll("#message-list .msg").length === n, turns * 2);
    const waiting = await page.evaluate(() =>
      [...document.querySelectorAll("#message-list .msg-content[aria-busy]")].map((b) => [
        b.childNodes.length,
        parseFloat(b.style.minHeight),
        b.getBoundingClientRect().height,
      ]),
    );
    assert.ok(waiting.length > 10, `answers wait to be rendered (${waiting.length})`);
    for (const [children, estimate, height] of waiting) {
      assert.equal(children, 0);
      assert.ok(estimate > 200, `an estimated height (${estimate} px)`);
      assert.equal(Math.round(height), estimate, "the place has the estimated height");
    }
    // Scrolled to the top: the answers there are rendered before those out of view.
    await page.evaluate(() => (document.getElementById("messages").scrollTop = 0));
    await page.waitForFunction(() => !document.querySelector("#message-list .msg-assistant .msg-content").hasAttribute("aria-busy"));
    const left = await busy();
    assert.ok(left > 10, `the answers out of view wait (${left} of ${turns})`);
    // Scrolled to one not rendered yet: the view stays on it as it and the answers around it are.
    const target = await page.evaluate(() => {
      const all = [...document.querySelectorAll("#message-list .msg-assistant")];
      const i = all.findIndex((a, j) => j > 5 && a.querySelector(".msg-content[aria-busy]"));
      all[i].scrollIntoView({ block: "start" });
      return i;
    });
    assert.ok(target > 0);
    const topOf = () =>
      page.evaluate((i) => {
        const a = document.querySelectorAll("#message-list .msg-assistant")[i];
        return a.getBoundingClientRect().top - document.getElementById("messages").getBoundingClientRect().top;
      }, target);
    const before = await topOf();
    await page.waitForFunction(() => !document.querySelector("#message-list .msg-content[aria-busy]"), null, { timeout: 60_000 });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const after = await topOf();
    assert.ok(Math.abs(after - before) < 30, `the answer stays where it was in the view (${before} → ${after} px)`);
    // Each answer is the whole render of its Markdown: heading, code with its toolbar, table, math.
    const shape = await page.evaluate(() =>
      [...document.querySelectorAll("#message-list .msg-assistant .msg-content")].map((b) => [
        b.querySelector("h2")?.textContent ?? "",
        !!b.querySelector(".code-block .copy-code"),
        !!b.querySelector("table"),
        !!b.querySelector(".math[data-typeset]"),
      ]),
    );
    assert.equal(shape.length, turns);
    shape.forEach(([heading, code, table, math], i) => {
      assert.match(heading, new RegExp(`^${i + 1}\\. Findings`), `answer ${i}`);
      assert.ok(code && table && math, `answer ${i}: ${JSON.stringify(shape[i])}`);
    });
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("deletes a conversation after confirmation", async () => {
    const page = await openApp();
    await sendMessage(page, "Something to delete TITLE:Doomed");
    await waitIdle(page);
    const id = await currentId(page);
    const item = page.locator(`#conv-list li[data-id="${id}"]`);
    await item.hover();
    await item.locator(".conv-delete").click();
    await page.waitForSelector("#confirm-dialog[open]");
    await page.click("#confirm-cancel");
    assert.equal(await item.count(), 1, "Cancel keeps it");
    await item.hover();
    await item.locator(".conv-delete").click();
    await page.click("#confirm-ok");
    await item.waitFor({ state: "detached" });
    assert.equal(await currentId(page), null, "the open conversation closes");
    assert.equal((await api(`/api/conversations/${encodeURIComponent(id)}`)).status, 404);
    await page.close();
  });

  it("remembers the theme", async () => {
    const page = await openApp();
    assert.equal(await page.getAttribute("html", "data-theme"), "dark");
    await page.click("#theme");
    assert.equal(await page.getAttribute("html", "data-theme"), "light");
    await page.reload();
    await page.waitForSelector("#composer-input");
    assert.equal(await page.getAttribute("html", "data-theme"), "light");
    await page.click("#theme");
    await page.close();
  });

  it("follows the system theme on a first visit", async () => {
    const page = await t.browser.context.newPage();
    await page.emulateMedia({ colorScheme: "light" });
    await page.goto(`${t.stack.baseUrl}/`);
    await page.evaluate(() => localStorage.clear());
    await page.reload();
    await page.waitForSelector("#composer-input");
    assert.equal(await page.getAttribute("html", "data-theme"), "light");
    await page.close();
  });

  it("sends on Enter and adds a line on Shift+Enter", async () => {
    const page = await openApp();
    await page.click("#composer-input");
    await page.keyboard.type("first line");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("second line");
    assert.equal(await page.inputValue("#composer-input"), "first line\nsecond line");
    assert.equal(await page.locator(".msg-user").count(), 0);
    await page.keyboard.press("Enter");
    await waitIdle(page);
    assert.equal(await page.locator(".msg-user .msg-text").textContent(), "first line\nsecond line");
    assert.equal(await page.inputValue("#composer-input"), "");
    await page.close();
  });

  it("loads more conversations when the list is scrolled", async () => {
    for (let i = 0; i < 35; i++) {
      const res = await api("/api/chat/send-simple", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ message: `bulk conversation ${i} TITLE:Bulk_${i}` }),
      });
      assert.equal(res.status, 200, await res.text());
    }
    const page = await openApp();
    await page.waitForFunction(() => document.querySelectorAll("#conv-list li").length >= 30);
    const total = (await (await api("/api/conversations?limit=200")).json()).items.length;
    assert.ok(total > 40);
    await page.evaluate(() => {
      const s = document.getElementById("conv-scroll");
      s.scrollTop = s.scrollHeight;
    });
    await page.waitForFunction((n) => document.querySelectorAll("#conv-list li").length === n, total);
    const ids = await page.evaluate(() => [...document.querySelectorAll("#conv-list li")].map((li) => li.dataset.id));
    assert.equal(new Set(ids).size, ids.length, "no duplicates");
    const titles = await page.evaluate(() => [...document.querySelectorAll("#conv-list .conv-title")].map((e) => e.textContent));
    assert.equal(titles[0], "Bulk 34", "newest first");
    await page.close();
  });

  it("works on a 390×844 phone screen", async () => {
    const page = await t.browser.context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${t.stack.baseUrl}/#/c/${encodeURIComponent(pdfConversation)}`);
    await page.waitForSelector(".msg-assistant");
    assert.equal(await page.isVisible("#composer-input"), true);
    assert.equal(await page.isVisible("#send"), true);
    assert.equal(await lastAnswer(page).isVisible(), true);
    const noOverflow = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth && document.body.scrollWidth <= window.innerWidth);
    assert.equal(await noOverflow(), true, "no horizontal overflow");
    const box = await page.locator("#composer").boundingBox();
    assert.ok(box && box.y + box.height <= 844 && box.width <= 390, "composer inside the viewport");

    // The sidebar is a drawer.
    assert.equal(await page.isVisible("#conv-list"), false);
    await page.click("#menu");
    await page.waitForSelector("#conv-list", { state: "visible" });
    const other = page.locator(`#conv-list li:not([data-id="${pdfConversation}"]) .conv-link`).first();
    await other.click();
    await page.waitForSelector("#conv-list", { state: "hidden" });
    await page.waitForFunction((cid) => location.hash !== "" && !location.hash.endsWith(encodeURIComponent(cid)), pdfConversation);

    await sendMessage(page, "A message from a small screen");
    await waitIdle(page);
    assert.equal(await noOverflow(), true);

    // The narrowest supported width.
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto(`${t.stack.baseUrl}/#/c/${encodeURIComponent(pdfConversation)}`);
    await page.waitForSelector(".msg-assistant");
    assert.equal(await noOverflow(), true, "no horizontal overflow at 360 px");
    assert.equal(await page.isVisible("#composer-input"), true);
    await page.close();
  });
});
