// Rendering benchmark: how smoothly the app shows a long streamed answer, and how quickly it opens
// a long conversation, measured in headless Chromium with the browser's performance API.
//
// The stack is the real one: the `conversa-local` server (CONVERSA_LOCAL_BIN) with the fake
// OpenAI provider of e2e/fake-openai.mjs, which streams the deterministic answer of
// bench/answer.mjs (4,000 tokens, ~20,000 characters of headings, tables, code, math and lists)
// at 150 tokens a second. In the page:
//   - frame times: the gaps between requestAnimationFrame callbacks while the answer streams;
//   - long tasks: PerformanceObserver "longtask" entries (main-thread tasks over 50 ms);
//   - token to paint: each `token` event's arrival (read from a tee of the response body) to the
//     end of the first frame whose DOM update came after it (a task queued from the mutation
//     observer runs once that frame's rendering is done).
// Then a 200-message conversation (100 questions, each answered with one section of that answer)
// is opened from the sidebar: the time until its newest answer is rendered, until its 200 messages
// are in the page and until the page stops changing for a second, and the long tasks and frame
// times in between. Then the view is scrolled from the bottom to the top of the conversation at
// a steady speed (SCROLL px/s, moved in each frame by the time since the last one), which is when
// an app that renders answers only as they near the view renders the older ones: the frame times
// and long tasks from the start of the scroll until every answer is rendered and the page has not
// changed for a second, and how many answers came into view before they were rendered (an empty
// place, busy).
//
// Usage: node bench/render.mjs [--dist DIR] [--label NAME] [--tokens N] [--rate N] [--turns N]
//                              [--scroll PX_PER_S] [--only stream|open]
// (DIR: the built frontend to serve, default dist/; its `npm run build` must be current).

import path from "node:path";
import { launchBrowser, startStack, frontendDir } from "../e2e/harness.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const dist = path.resolve(opt("dist", path.join(frontendDir, "dist")));
const label = opt("label", "this build");
const TOKENS = Number(opt("tokens", 4000));
const RATE = Number(opt("rate", 150));
const TURNS = Number(opt("turns", 100));
const ONLY = opt("only", "");
const SCROLL = Number(opt("scroll", 3000));

/** Installed in the page before the app loads. */
function instrument() {
  const m = (window.__bench = { frames: [], longtasks: [], arrivals: [], painted: [], mutations: 0 });
  const frame = (t) => {
    m.frames.push(t);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) m.longtasks.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: "longtask", buffered: true });

  // Token arrivals, read from a copy of the chat stream's body.
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const res = await realFetch(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (!url.includes("/api/chat/send") || !res.body) return res;
    const [mine, theirs] = res.body.tee();
    (async () => {
      const reader = mine.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const now = performance.now();
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const ev = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          if (/^event: token$/m.test(ev)) m.arrivals.push(now);
          if (/^event: done$/m.test(ev)) m.doneAt = now;
        }
      }
    })();
    return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  };

  // A token is painted by the end of the first frame whose answer update came after it arrived.
  const channel = new MessageChannel();
  let pendingUpTo = -1;
  channel.port1.onmessage = () => {
    const now = performance.now();
    while (m.painted.length <= pendingUpTo) m.painted.push(now);
    pendingUpTo = -1;
  };
  new MutationObserver((records) => {
    if (records.some((r) => (r.target.nodeType === 1 ? r.target : r.target.parentElement)?.closest?.("#message-list"))) {
      m.lastListMutation = performance.now();
    }
    if (!records.some((r) => (r.target.nodeType === 1 ? r.target : r.target.parentElement)?.closest?.(".msg-assistant .msg-content"))) return;
    m.mutations++;
    if (m.arrivals.length > m.painted.length) {
      if (pendingUpTo < 0) channel.port2.postMessage(0);
      pendingUpTo = m.arrivals.length - 1;
    }
  }).observe(document, { subtree: true, childList: true, characterData: true });
}

function pct(xs, p) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function summarize(m, from, to) {
  const frames = m.frames.filter((t) => t >= from && t <= to);
  const gaps = frames.slice(1).map((t, i) => t - frames[i]);
  const tasks = m.longtasks.filter((t) => t.start + t.duration >= from && t.start <= to);
  return {
    frames: frames.length,
    frame_p50_ms: pct(gaps, 50),
    frame_p95_ms: pct(gaps, 95),
    frame_max_ms: gaps.length ? Math.max(...gaps) : NaN,
    longtasks: tasks.length,
    longtask_max_ms: tasks.length ? Math.max(...tasks.map((t) => t.duration)) : 0,
    longtask_total_ms: tasks.reduce((a, t) => a + t.duration, 0),
    // The longest ones: [start after the window opened, duration] in ms.
    // The longest frames: [start after the window opened, duration] in ms.
    frame_top: gaps.map((g, i) => [Math.round(frames[i] - from), Math.round(g)]).sort((a, b) => b[1] - a[1]).slice(0, 6),
    longtask_top: [...tasks].sort((a, b) => b.duration - a.duration).slice(0, 5).map((t) => [Math.round(t.start - from), Math.round(t.duration)]),
  };
}

async function readAll(res) {
  const text = await res.text();
  if (!/event: done/.test(text)) throw new Error(`turn did not finish: ${text.slice(-300)}`);
  return /"conversation_id":\s*"([^"]+)"/.exec(text)[1];
}

const stack = await startStack({ CONVERSA_FRONTEND_DIR: dist });
const browser = await launchBrowser();
const out = { label, dist, tokens: TOKENS, rate: RATE };
try {
  // 1. The long answer, streamed.
  if (ONLY !== "open") {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(120_000);
  await page.addInitScript(instrument);
  await page.goto(`${stack.baseUrl}/`);
  await page.waitForSelector("#composer-input");
  await page.fill("#composer-input", `BENCH_ANSWER:${TOKENS}:${RATE}`);
  await page.press("#composer-input", "Enter");
  await page.waitForFunction((n) => window.__bench.painted.length >= n && window.__bench.doneAt, TOKENS, { polling: 250 });
  await page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming"));
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const m = await page.evaluate(() => window.__bench);
  const lags = m.arrivals.map((t, i) => m.painted[i] - t);
  const from = m.arrivals[0];
  const to = m.painted[m.painted.length - 1];
  out.stream = {
    tokens_seen: m.arrivals.length,
    seconds: (to - from) / 1000,
    ...summarize(m, from, to),
    token_to_paint_p50_ms: pct(lags, 50),
    token_to_paint_p95_ms: pct(lags, 95),
    token_to_paint_max_ms: Math.max(...lags),
    answer_chars: await page.evaluate(() => document.querySelector(".msg-assistant .msg-content").textContent.length),
  };
  await page.close();
  }

  // 2. A 200-message conversation opened from the sidebar.
  let conversation = null;
  for (let i = 0; i < TURNS && ONLY !== "stream"; i++) {
    const body = { message: `BENCH_HISTORY:${i}` };
    if (conversation) body.conversation_id = conversation;
    const res = await fetch(`${stack.baseUrl}/api/chat/send`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`send: ${res.status} ${await res.text()}`);
    conversation = await readAll(res);
  }
  if (ONLY !== "stream") {
  const p2 = await browser.context.newPage();
  p2.setDefaultTimeout(120_000);
  await p2.addInitScript(instrument);
  await p2.goto(`${stack.baseUrl}/`);
  const link = p2.locator(`#conv-list li[data-id="${conversation}"] .conv-link`);
  await link.waitFor();
  // Let the page settle so that only the opening is measured.
  await p2.evaluate(() => new Promise((r) => setTimeout(r, 500)));
  const t0 = await p2.evaluate(() => performance.now());
  await link.click();
  // The newest answer rendered: what the reader sees first.
  await p2.waitForFunction(
    () => {
      const body = [...document.querySelectorAll("#message-list .msg-assistant .msg-content")].pop();
      return !!body && !body.hasAttribute("aria-busy") && body.childElementCount > 0;
    },
    null,
    { polling: "raf" },
  );
  const newest = await p2.evaluate(() => performance.now());
  await p2.waitForFunction((n) => document.querySelectorAll("#message-list .msg").length >= n, TURNS * 2, { polling: "raf" });
  const shown = await p2.evaluate(() => performance.now());
  // Done when the list has not changed for a second.
  await p2.waitForFunction(() => performance.now() - window.__bench.lastListMutation > 1000, null, { polling: 100 });
  const m2 = await p2.evaluate(() => window.__bench);
  out.open = {
    messages: TURNS * 2,
    click_to_newest_shown_ms: newest - t0,
    click_to_messages_shown_ms: shown - t0,
    click_to_last_change_ms: m2.lastListMutation - t0,
    // Answers rendered by then (of TURNS): all, unless the app waits for the reader to scroll.
    answers_rendered: await p2.evaluate(() => document.querySelectorAll("#message-list .msg-assistant .msg-content:not([aria-busy])").length),
    ...summarize(m2, t0, m2.lastListMutation + 100),
  };

  // 3. Scrolled from the bottom to the top.
  const scroll = await p2.evaluate((speed) => {
    const el = document.getElementById("messages");
    // Answers seen before they were rendered: in view while still busy (as the observer reports
    // them, after the frame: a lower bound).
    const seen = new Set();
    const watch = new IntersectionObserver(
      (entries) => {
        for (const e of entries) if (e.isIntersecting && e.target.querySelector(".msg-content[aria-busy]")) seen.add(e.target);
      },
      { root: el },
    );
    for (const a of document.querySelectorAll("#message-list .msg-assistant")) watch.observe(a);
    window.__seenSource = seen;
    return new Promise((resolve) => {
      const from = performance.now();
      let last = from;
      const step = (t) => {
        el.scrollTop = Math.max(0, el.scrollTop - (speed * (t - last)) / 1000);
        last = t;
        if (el.scrollTop > 0) requestAnimationFrame(step);
        else resolve({ from, top: performance.now() });
      };
      requestAnimationFrame(step);
    });
  }, SCROLL);
  await p2.waitForFunction(() => !document.querySelector("#message-list .msg-content[aria-busy]"), null, { polling: 100 });
  await p2.waitForFunction(() => performance.now() - window.__bench.lastListMutation > 1000, null, { polling: 100 });
  const m3 = await p2.evaluate(() => window.__bench);
  const end = Math.max(scroll.top, m3.lastListMutation);
  out.scroll = {
    px_per_s: SCROLL,
    scroll_height_px: await p2.evaluate(() => document.getElementById("messages").scrollHeight),
    seconds_to_top: (scroll.top - scroll.from) / 1000,
    top_to_last_change_ms: Math.max(0, m3.lastListMutation - scroll.top),
    answers_seen_unrendered: await p2.evaluate(() => window.__seenSource.size),
    answers_rendered: await p2.evaluate(() => document.querySelectorAll("#message-list .msg-assistant .msg-content:not([aria-busy])").length),
    ...summarize(m3, scroll.from, end + 100),
  };
  await p2.close();
  }
} finally {
  await browser.close();
  await stack.stop();
}

const r2 = (x) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : x);
console.log(JSON.stringify(out, (k, v) => (typeof v === "number" ? r2(v) : k === "longtask_top" || k === "frame_top" ? JSON.stringify(v) : v), 2));
