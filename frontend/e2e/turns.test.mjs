// End-to-end: turns live on the server. Stop stops the model there, Regenerate adds a sibling
// answer and "‹ 1 / 2 ›" moves between versions, Edit sends a new version of a question into a
// branch of its own, and a reload (or a second tab) in the middle of an answer picks the stream up
// where it is. The built frontend, the real server, a fake model provider, headless Chromium.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { stackForTests } from "./harness.mjs";

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

async function conversationId(page) {
  await page.waitForFunction(() => /^#\/c\/.+/.test(location.hash));
  return decodeURIComponent((await page.evaluate(() => location.hash)).slice(4));
}

async function getJson(path) {
  const res = await fetch(`${t.stack.baseUrl}${path}`);
  assert.equal(res.status, 200, `GET ${path}`);
  return res.json();
}

/** Polls `fn` until it returns a truthy value (or fails after the deadline). */
async function eventually(fn, what, timeoutMs = TIMEOUT) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** The texts of the messages shown, in order, as [role, text]. */
async function shown(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#message-list .msg")].map((el) => [
      el.classList.contains("msg-user") ? "user" : "assistant",
      (el.querySelector(".msg-content")?.textContent ?? "").trim(),
    ]),
  );
}

/** The highest "wordN" in the answer being streamed. */
async function lastWord(page) {
  return page.evaluate(() => {
    const text = [...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent ?? "";
    const all = [...text.matchAll(/word(\d+)/g)].map((m) => Number(m[1]));
    return all.length ? Math.max(...all) : 0;
  });
}

/** The words of a slow answer: word1, word2, … each exactly once, in order. */
function assertWordsInOrder(text) {
  const words = text.split(/\s+/).filter(Boolean);
  assert.ok(words.length > 0, "some words");
  words.forEach((w, i) => assert.equal(w, `word${i + 1}`, `word ${i + 1} of ${JSON.stringify(text.slice(0, 200))}`));
  return words.length;
}

describe("turns in the browser", () => {
  it("Stop stops the answer on the server, which stores what was generated", async () => {
    const page = await openApp();
    await sendMessage(page, "Please SLOW_STREAM a long answer");
    await page.waitForFunction(() => /word5\b/.test([...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent ?? ""));
    const convId = await conversationId(page);
    await page.click("#stop");
    await waitIdle(page);
    const answer = page.locator(".msg-assistant").last();
    assert.match(await answer.locator(".msg-note").textContent(), /Stopped/);
    const shownText = (await answer.locator(".msg-content").textContent()).trim();
    const count = assertWordsInOrder(shownText);
    assert.ok(count < 400, "the answer was cut short");

    // The server stopped generating and stored the partial answer: the words the page showed.
    const conv = await eventually(async () => {
      const c = await getJson(`/api/conversations/${encodeURIComponent(convId)}`);
      return c.generating_message_id ? null : c;
    }, "the turn to end on the server");
    const messages = await getJson(`/api/conversations/${encodeURIComponent(convId)}/messages`);
    const stored = messages.items ? messages.items : messages;
    const last = stored[stored.length - 1];
    assert.equal(last.id, conv.current_message_id);
    assert.equal(last.role, "assistant");
    assert.equal(last.status, "incomplete");
    assert.equal(last.content.trim(), shownText, "the stored answer is what was streamed");
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("Regenerate adds a sibling answer, and ‹ › moves between the versions (kept after a reload)", async () => {
    const page = await openApp();
    await sendMessage(page, "COUNTED question about cats");
    await waitIdle(page);
    const convId = await conversationId(page);
    const answer = () => page.locator(".msg-assistant").last();
    const first = (await answer().locator(".msg-content").textContent()).trim();
    const n1 = Number(/Answer number (\d+)/.exec(first)?.[1]);
    assert.ok(n1 > 0, first);
    assert.equal(await answer().locator(".msg-branches").count(), 0, "one version: no ‹ ›");

    await answer().locator("button.regenerate").click();
    await page.waitForFunction(
      () => document.querySelector(".msg-assistant:last-child .branch-count")?.textContent === "2 / 2",
    );
    await waitIdle(page);
    const second = (await answer().locator(".msg-content").textContent()).trim();
    assert.match(second, new RegExp(`Answer number ${n1 + 1} to: COUNTED question about cats`));
    assert.equal((await shown(page)).length, 2, "the new answer replaced the old one in the view");
    assert.equal(await answer().locator(".branch-next").isDisabled(), true);

    // ‹ : the first answer again, and it is the current branch on the server.
    await answer().locator(".branch-prev").click();
    await page.waitForFunction(() => document.querySelector(".msg-assistant:last-child .branch-count")?.textContent === "1 / 2");
    assert.equal((await answer().locator(".msg-content").textContent()).trim(), first);
    const all = await getJson(`/api/conversations/${encodeURIComponent(convId)}/messages?all=true`);
    const tree = all.items ? all.items : all;
    const answers = tree.filter((m) => m.role === "assistant");
    assert.equal(answers.length, 2);
    assert.equal(answers[0].parent_id, answers[1].parent_id, "the two answers are siblings");
    const conv = await getJson(`/api/conversations/${encodeURIComponent(convId)}`);
    assert.equal(conv.current_message_id, answers[0].id);

    // After a reload the same version shows; › goes to the other.
    await page.reload();
    await page.waitForFunction(() => document.querySelector(".msg-assistant:last-child .branch-count")?.textContent === "1 / 2");
    assert.equal((await answer().locator(".msg-content").textContent()).trim(), first);
    await answer().locator(".branch-next").click();
    await page.waitForFunction(() => document.querySelector(".msg-assistant:last-child .branch-count")?.textContent === "2 / 2");
    assert.equal((await answer().locator(".msg-content").textContent()).trim(), second);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("Edit sends a new version of a question into a branch of its own; the old branch stays", async () => {
    const page = await openApp();
    await sendMessage(page, "COUNTED first question");
    await waitIdle(page);
    await sendMessage(page, "COUNTED second question");
    await waitIdle(page);
    const before = await shown(page);
    assert.equal(before.length, 4);

    // Edit the second question.
    const second = page.locator(".msg-user").nth(1);
    await second.locator("button.edit-message").click();
    await second.locator(".edit-box").fill("COUNTED second question, edited");
    await second.locator(".edit-box").press("Enter");
    await page.waitForFunction(() => document.querySelectorAll(".msg-user")[1]?.querySelector(".branch-count")?.textContent === "2 / 2");
    await waitIdle(page);
    const edited = await shown(page);
    assert.equal(edited.length, 4);
    assert.deepEqual(edited.slice(0, 2), before.slice(0, 2), "what came before the edit is unchanged");
    assert.equal(edited[2][1], "COUNTED second question, edited");
    assert.match(edited[3][1], /Answer number \d+ to: COUNTED second question, edited/);

    // ‹ on the question: the old version with its old answer.
    await page.locator(".msg-user").nth(1).locator(".branch-prev").click();
    await page.waitForFunction(() => document.querySelectorAll(".msg-user")[1]?.querySelector(".branch-count")?.textContent === "1 / 2");
    assert.deepEqual(await shown(page), before);

    // Editing the first question starts a new first message (parent null): a branch of two.
    const first = page.locator(".msg-user").first();
    await first.locator("button.edit-message").click();
    await first.locator(".edit-box").fill("COUNTED a different start");
    await first.locator(".edit-box").press("Enter");
    await page.waitForFunction(() => document.querySelector(".msg-user .branch-count")?.textContent === "2 / 2");
    await waitIdle(page);
    const restarted = await shown(page);
    assert.equal(restarted.length, 2);
    assert.equal(restarted[0][1], "COUNTED a different start");
    const convId = await conversationId(page);
    const all = await getJson(`/api/conversations/${encodeURIComponent(convId)}/messages?all=true`);
    const tree = all.items ? all.items : all;
    assert.equal(tree.length, 8, "nothing was lost: every version is in the tree");
    assert.equal(tree.filter((m) => m.parent_id === null || m.parent_id === undefined).length, 2);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("a reload or a second tab in the middle of an answer picks it up where it is, then Stop ends it", async () => {
    const page = await openApp();
    await sendMessage(page, "Reload me SLOW_STREAM");
    await page.waitForFunction(() => /word4\b/.test([...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent ?? ""));
    const convId = await conversationId(page);
    const beforeReload = await lastWord(page);

    await page.reload();
    // The answer streams on from where it is, with the Stop button, and the sidebar marks the
    // conversation as being answered.
    await page.waitForSelector(".msg-assistant.streaming");
    assert.equal(await page.isVisible("#stop"), true);
    await page.waitForSelector(`#conv-list li[data-id="${convId}"] .conv-generating`);
    await eventually(async () => (await lastWord(page)) > beforeReload + 3, "new words after the reload");

    // A second tab follows the same answer.
    const tab = await openApp(`#/c/${encodeURIComponent(convId)}`);
    await tab.waitForSelector(".msg-assistant.streaming");
    const tabStart = await lastWord(tab);
    await eventually(async () => (await lastWord(tab)) > tabStart + 2, "new words in the second tab");

    // Stop in the first tab ends the answer in both.
    await page.click("#stop");
    await waitIdle(page);
    await waitIdle(tab);
    assert.match(await page.locator(".msg-assistant").last().locator(".msg-note").textContent(), /Stopped/);
    assert.match(await tab.locator(".msg-assistant").last().locator(".msg-note").textContent(), /Stopped/);
    const pageText = (await page.locator(".msg-assistant").last().locator(".msg-content").textContent()).trim();
    const tabText = (await tab.locator(".msg-assistant").last().locator(".msg-content").textContent()).trim();
    assertWordsInOrder(pageText);
    assert.equal(tabText, pageText, "both tabs show the same answer, each word once");

    await eventually(async () => !(await getJson(`/api/conversations/${encodeURIComponent(convId)}`)).generating_message_id, "the turn to end");
    const messages = await getJson(`/api/conversations/${encodeURIComponent(convId)}/messages`);
    const stored = messages.items ? messages.items : messages;
    assert.equal(stored[stored.length - 1].content.trim(), pageText, "the stored answer is what was streamed");
    await page.waitForFunction((id) => !document.querySelector(`#conv-list li[data-id="${id}"] .conv-generating`), convId);
    assert.deepEqual(page.errors, []);
    assert.deepEqual(tab.errors, []);
    await tab.close();
    await page.close();
  });
});
