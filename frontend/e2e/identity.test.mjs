// End-to-end: signing in, in headless Chromium against the real server.
//
// - Local accounts (CONVERSA_AUTH=local): the first-run "create the admin account", the user menu,
//   a reload that stays signed in, signing out and in again (a wrong password first), the API keys
//   page (create, copy once, the key works, revoke), and a user added by the admin.
// - An OpenID provider (CONVERSA_AUTH=oidc) — npm `oidc-provider`, a real one, with short-lived ID
//   tokens: the authorization-code flow with PKCE through the provider's sign-in page, the ID token
//   renewed before it expires, a reload that signs in again through the provider's session and
//   comes back to the conversation, and a user outside the admin group.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import fs from "node:fs";
import { freePort, launchBrowser, startStack } from "./harness.mjs";
import { startOidcProvider } from "./oidc-test-provider.mjs";

const TIMEOUT = 45_000;
const PASSWORD = "correct horse battery";
const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** Serious and critical axe-core violations on the page as it is. */
async function accessibilityProblems(page) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ["violations"], rules: { region: { enabled: false } } }),
  );
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
}

async function newPage(browser) {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
  return page;
}

async function send(page, text) {
  await page.fill("#composer-input", text);
  await page.press("#composer-input", "Enter");
  await page.waitForFunction((t) => [...document.querySelectorAll(".msg-assistant .msg-content")].pop()?.textContent.includes(t), text);
  await page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
}

async function signedInAs(page) {
  await page.waitForSelector("#user:not([hidden])");
  await page.click("#user-btn");
  const who = { label: await page.textContent("#user-label"), role: await page.textContent("#user-role") };
  await page.keyboard.press("Escape");
  return who;
}

describe("local accounts", () => {
  let stack;
  let browser;

  before(async () => {
    stack = await startStack({ CONVERSA_AUTH: "local", CONVERSA_TIERS: '{"default": {"tokens_per_day": 1000000}}' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it("creates the admin account on first run, stays signed in across a reload, signs out and in", async () => {
    const page = await newPage(browser);
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForSelector("#signin:not([hidden])");
    assert.equal(await page.textContent("#signin-title"), "Create the admin account");
    assert.equal(await page.isHidden("#app"), true);
    await page.fill("#signin-name", "Ada Admin");
    await page.fill("#signin-email", "Ada@Example.com");
    await page.fill("#signin-password", "short");
    await page.click(".signin-submit");
    assert.match(await page.textContent("#signin-error"), /at least 10 characters/);
    await page.fill("#signin-password", PASSWORD);
    await page.click(".signin-submit");
    await page.waitForSelector("#composer-input");
    assert.deepEqual(await signedInAs(page), { label: "Ada Admin", role: "admin" });
    await send(page, "hello from Ada");

    await page.reload();
    await page.waitForSelector("#conv-list .conv-item");
    assert.equal(await page.isHidden("#signin"), true, "still signed in after a reload");

    await page.click("#user-btn");
    await page.click("#sign-out");
    await page.waitForSelector("#signin:not([hidden])");
    assert.equal(await page.textContent("#signin-title"), "Sign in");
    await page.reload();
    await page.waitForSelector("#signin:not([hidden])");
    assert.equal(await page.isHidden("#app"), true, "signed out stays signed out");

    await page.fill("#signin-email", "ada@example.com");
    await page.fill("#signin-password", "not the password");
    await page.click(".signin-submit");
    await page.waitForSelector("#signin-error:not([hidden])");
    assert.equal(await page.textContent("#signin-error"), "The email or password is wrong.");
    await page.fill("#signin-password", PASSWORD);
    await page.click(".signin-submit");
    await page.waitForSelector("#conv-list .conv-item");
    assert.equal(await page.locator("#conv-list .conv-item").count(), 1, "the conversation is back");
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("the usage page shows this month's answers, the day's budget as a bar and tokens per day as a chart", async () => {
    const page = await newPage(browser);
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForSelector("#composer-input");
    await page.click("#user-btn");
    await page.click("#open-usage");
    await page.waitForSelector("#usage-dialog[open]");
    await page.waitForFunction(() => /answer/.test(document.getElementById("usage-summary").textContent));
    const summary = await page.textContent("#usage-summary");
    // Ada's one answer; the fake title model has no price, so the cost is unknown.
    assert.match(
      summary,
      /^1 answer, [\d,]+ tokens, cost unknown \(a model has no price\) \(\d{4}-\d{2}-01 to \d{4}-\d{2}-\d{2}; tier default\)\.$/,
    );
    const budget = page.locator("#usage-budgets .usage-budget");
    assert.equal(await budget.count(), 1);
    assert.match(await budget.textContent(), /^Tokens today: [\d,]+ of 1,000,000$/);
    const share = Number(await budget.locator("progress").getAttribute("value"));
    assert.ok(share > 0 && share < 0.01, `${share}`);
    await page.waitForSelector("#usage-chart canvas");
    const days = Number(await page.getAttribute("#usage-chart", "data-points"));
    assert.ok(days >= 28 && days <= 31, `a point per day of the month: ${days}`);
    await page.click("#usage-close");
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  it("API keys: created, copied once, working as a bearer token, revoked", async () => {
    const page = await newPage(browser);
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForSelector("#composer-input");
    await page.click("#user-btn");
    await page.click("#open-keys");
    await page.waitForSelector("#keys-dialog[open]");
    await page.waitForSelector("#keys-empty:not([hidden])");
    await page.fill("#key-name", "nightly export");
    await page.click("#key-create");
    await page.waitForSelector("#key-new:not([hidden])");
    const key = await page.inputValue("#key-value");
    assert.match(key, /^cvk_[A-Za-z0-9_-]{43}$/);
    await page.click("#key-copy");
    await page.waitForFunction(() => document.getElementById("key-copy").textContent === "Copied");
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
    assert.match(await page.textContent("#key-list"), /nightly export/);

    const me = await fetch(`${stack.baseUrl}/api/me`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(me.status, 200);
    assert.equal((await me.json()).email, "ada@example.com");

    await page.click("#keys-close");
    await page.click("#user-btn");
    await page.click("#open-keys");
    await page.waitForSelector("#key-list .key-item");
    assert.equal(await page.isHidden("#key-new"), true, "shown once");
    assert.equal(await page.inputValue("#key-value"), "");
    assert.doesNotMatch(await page.content(), new RegExp(key));
    assert.match(await page.textContent("#key-list .key-meta"), /last used/);

    await page.click("#key-list .key-item button");
    await page.waitForSelector("#keys-empty:not([hidden])");
    const after = await fetch(`${stack.baseUrl}/api/me`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(after.status, 401);
    await page.close();
  });

  it("the sign-in screen, the user menu and the API keys page have no serious accessibility problems", async () => {
    for (const theme of ["dark", "light"]) {
      const fresh = await launchBrowser({ colorScheme: theme });
      try {
        const page = await newPage(fresh);
        await page.goto(`${stack.baseUrl}/`);
        await page.waitForSelector("#signin:not([hidden]) #signin-email");
        await page.fill("#signin-email", "ada@example.com");
        await page.fill("#signin-password", "wrong password!");
        await page.click(".signin-submit");
        await page.waitForSelector("#signin-error:not([hidden])");
        assert.deepEqual(await accessibilityProblems(page), [], `sign-in, ${theme}`);
      } finally {
        await fresh.close();
      }
    }
    const page = await newPage(browser);
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForSelector("#composer-input");
    await page.click("#user-btn");
    assert.deepEqual(await accessibilityProblems(page), [], "user menu");
    await page.click("#open-keys");
    await page.fill("#key-name", "audit");
    await page.click("#key-create");
    await page.waitForSelector("#key-new:not([hidden])");
    assert.deepEqual(await accessibilityProblems(page), [], "API keys");
    await page.close();
  });

  it("a person the admin adds signs in as a user", async () => {
    const login = await fetch(`${stack.baseUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "ada@example.com", password: PASSWORD }),
    });
    const { access_token } = await login.json();
    const added = await fetch(`${stack.baseUrl}/api/admin/users`, {
      method: "POST",
      headers: { "content-type": "application/json", Authorization: `Bearer ${access_token}` },
      body: JSON.stringify({ email: "bob@example.com", password: PASSWORD, name: "Bob" }),
    });
    assert.equal(added.status, 201);
    const other = await launchBrowser();
    try {
      const page = await newPage(other);
      await page.goto(`${stack.baseUrl}/`);
      await page.waitForSelector("#signin:not([hidden])");
      assert.equal(await page.textContent("#signin-title"), "Sign in");
      assert.equal(await page.$(".signin-switch"), null, "registration is closed");
      await page.fill("#signin-email", "BOB@example.com");
      await page.fill("#signin-password", PASSWORD);
      await page.click(".signin-submit");
      await page.waitForSelector("#composer-input");
      assert.deepEqual(await signedInAs(page), { label: "Bob", role: "user" });
      assert.equal(await page.locator("#conv-list .conv-item").count(), 0, "Ada's conversations are hers");
      // People who are not admins have no admin page.
      await page.click("#user-btn");
      assert.equal(await page.isHidden("#open-admin"), true);
    } finally {
      await other.close();
    }
  });

  it("the admin page lists people with this month's usage, changes a tier or disables someone, and charts tokens by person and model", async () => {
    const page = await newPage(browser);
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForSelector("#composer-input");
    await page.click("#user-btn");
    await page.click("#open-admin");
    await page.waitForSelector("#admin-dialog[open]");
    await page.waitForSelector("#admin-users tbody tr");
    const ada = page.locator("#admin-users tbody tr", { hasText: "Ada Admin" });
    const bob = page.locator("#admin-users tbody tr", { hasText: "Bob" });
    assert.equal(await ada.locator("td").nth(3).textContent(), "1", "Ada's one answer");
    assert.match(await ada.locator("td").nth(4).textContent(), /^[1-9][\d,]*$/);
    assert.equal(await bob.locator("td").nth(3).textContent(), "0");
    // An unknown tier is refused with the tiers there are, and the field goes back.
    await bob.locator(".admin-tier").fill("gold");
    await bob.locator(".admin-tier").press("Enter");
    await page.waitForSelector("#admin-error:not([hidden])");
    assert.match(await page.textContent("#admin-error"), /Unknown tier "gold"; the tiers are default/);
    assert.equal(await bob.locator(".admin-tier").inputValue(), "default");
    // Disabling takes effect on the API at once.
    await bob.locator(".admin-disabled").check();
    const login = await fetch(`${stack.baseUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "bob@example.com", password: PASSWORD }),
    });
    await page.waitForFunction(() => document.getElementById("admin-error").hidden);
    assert.equal(login.status, 403, "a disabled person cannot sign in");
    // The charts: one bar per person and per model.
    await page.waitForSelector("#admin-by-user canvas");
    await page.waitForSelector("#admin-by-model canvas");
    assert.equal((await page.getAttribute("#admin-by-user", "data-bars")).split(",").length, 1, "only Ada used anything");
    assert.match(await page.getAttribute("#admin-by-model", "data-bars"), /gpt-4o/);
    assert.deepEqual(page.errors, []);
    await page.close();
  });
});

describe("an OpenID provider", () => {
  let stack;
  let browser;
  let op;
  const tokenRequests = [];

  before(async () => {
    const port = await freePort();
    // ID tokens live 70 s: the app renews them a minute before, 10 s after signing in.
    op = await startOidcProvider({ redirectUris: [`http://127.0.0.1:${port}/`], idTokenTtl: 70 });
    stack = await startStack(
      {
        CONVERSA_AUTH: "oidc",
        CONVERSA_OIDC_ISSUER: op.issuer,
        CONVERSA_OIDC_AUDIENCE: op.clientId,
        CONVERSA_OIDC_GROUPS_CLAIM: "groups",
        CONVERSA_OIDC_SCOPES: "openid email profile groups",
      },
      { port },
    );
    browser = await launchBrowser();
    // The provider's dev pages load web fonts: nothing leaves this machine.
    await browser.context.route((url) => url.hostname !== "127.0.0.1", (route) => route.abort());
    browser.context.on("request", (req) => {
      if (req.url() === `${op.issuer}/token` && req.method() === "POST") tokenRequests.push(new URLSearchParams(req.postData() ?? ""));
    });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
    await op?.stop();
  });

  async function signInThroughProvider(page, login) {
    await page.waitForURL(`${op.issuer}/interaction/**`);
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', "any password");
    await page.click('button[type="submit"]');
  }

  it("signs in with the code flow and PKCE, renews the ID token, and comes back to the conversation", async () => {
    const page = await newPage(browser);
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForSelector("#signin:not([hidden]) .signin-submit");
    await page.click(".signin-submit");
    await signInThroughProvider(page, "alice");
    await page.waitForSelector("#composer-input");
    assert.equal(await page.evaluate(() => location.search), "", "the code and state are gone from the address");
    assert.deepEqual(await signedInAs(page), { label: "Alice Admin", role: "admin" });
    const code = tokenRequests.find((p) => p.get("grant_type") === "authorization_code");
    assert.ok(code?.get("code_verifier"), "the code was exchanged with its PKCE verifier");

    await send(page, "alice's first question");
    const hash = await page.evaluate(() => location.hash);
    assert.match(hash, /^#\/c\//);

    // The ID token is renewed with the refresh token before it expires, and the new one works.
    const deadline = Date.now() + 40_000;
    while (!tokenRequests.some((p) => p.get("grant_type") === "refresh_token")) {
      assert.ok(Date.now() < deadline, "the ID token was renewed");
      await new Promise((r) => setTimeout(r, 250));
    }
    await send(page, "a question after the renewal");

    // Tokens live in memory: a reload signs in again through the provider's session (no form)
    // and returns to the conversation.
    const exchanges = tokenRequests.filter((p) => p.get("grant_type") === "authorization_code").length;
    await page.reload();
    await page.waitForSelector("#composer-input");
    await page.waitForFunction(() => document.querySelectorAll(".msg-user").length === 2);
    assert.equal(await page.evaluate(() => location.hash), hash);
    assert.equal(tokenRequests.filter((p) => p.get("grant_type") === "authorization_code").length, exchanges + 1);
    assert.deepEqual(page.errors, []);

    await page.click("#user-btn");
    await page.click("#sign-out");
    await page.waitForSelector("#signin:not([hidden]) .signin-submit");
    await page.close();
  });

  it("someone outside the admin group is a user and sees only their own conversations", async () => {
    const other = await launchBrowser();
    await other.context.route((url) => url.hostname !== "127.0.0.1", (route) => route.abort());
    try {
      const page = await newPage(other);
      await page.goto(`${stack.baseUrl}/`);
      await page.click("#signin:not([hidden]) .signin-submit");
      await signInThroughProvider(page, "bob");
      await page.waitForSelector("#composer-input");
      assert.deepEqual(await signedInAs(page), { label: "Bob User", role: "user" });
      assert.equal(await page.locator("#conv-list .conv-item").count(), 0);
    } finally {
      await other.close();
    }
  });
});
