import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Api } from "../src/api";
import {
  LocalAuth,
  OIDC_AUTO_KEY,
  OIDC_PENDING_KEY,
  OidcAuth,
  REFRESH_KEY,
  base64url,
  expiryOf,
  jwtClaims,
  pkceChallenge,
} from "../src/auth";

/** An unsigned JWT with these claims (the client never verifies signatures; the server does). */
function jwt(claims: Record<string, unknown>): string {
  const enc = (v: unknown) => base64url(new TextEncoder().encode(JSON.stringify(v)));
  return `${enc({ alg: "RS256", kid: "k" })}.${enc(claims)}.c2ln`;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const OIDC = {
  issuer: "https://idp.example.com",
  client_id: "conversa-web",
  authorization_endpoint: "https://idp.example.com/authorize",
  token_endpoint: "https://idp.example.com/token",
  scopes: "openid email profile",
};

beforeEach(() => {
  localStorage.clear();
  sessionStorage.clear();
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe("PKCE and tokens", () => {
  it("makes the RFC 7636 challenge of a verifier", async () => {
    expect(await pkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).toBe(
      "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
  });

  it("reads claims and expiry, and survives garbage", () => {
    const t = jwt({ sub: "a", exp: 2_000_000_000, nonce: "n" });
    expect(jwtClaims(t)).toMatchObject({ sub: "a", nonce: "n" });
    expect(expiryOf(t)).toBe(2_000_000_000_000);
    expect(jwtClaims("not a token")).toBeNull();
    expect(jwtClaims("a.%%%.c")).toBeNull();
    expect(expiryOf("opaque", 900, 1_000)).toBe(901_000);
  });
});

describe("OidcAuth", () => {
  it("goes to the provider with PKCE S256, state and nonce, remembering where it was", async () => {
    const assign = vi.fn();
    vi.stubGlobal("location", { ...window.location, assign, hash: "#/c/42", origin: "https://app.example", pathname: "/" });
    const auth = new OidcAuth(OIDC, "https://app.example/");
    await auth.begin("#/c/42");
    const url = new URL(assign.mock.calls[0]![0] as string);
    const p = url.searchParams;
    expect(url.origin + url.pathname).toBe(OIDC.authorization_endpoint);
    expect(p.get("response_type")).toBe("code");
    expect(p.get("client_id")).toBe("conversa-web");
    expect(p.get("redirect_uri")).toBe("https://app.example/");
    expect(p.get("scope")).toBe("openid email profile");
    expect(p.get("code_challenge_method")).toBe("S256");
    const pending = JSON.parse(sessionStorage.getItem(OIDC_PENDING_KEY)!);
    expect(p.get("state")).toBe(pending.state);
    expect(p.get("nonce")).toBe(pending.nonce);
    expect(p.get("code_challenge")).toBe(await pkceChallenge(pending.verifier));
    expect(pending.returnTo).toBe("#/c/42");
    expect(p.has("code_verifier")).toBe(false);
  });

  async function returnWith(state: string, nonce: string, tokenStatus = 200) {
    sessionStorage.setItem(
      OIDC_PENDING_KEY,
      JSON.stringify({ verifier: "v".repeat(43), state: "s1", nonce: "n1", returnTo: "#/c/42" }),
    );
    const id = jwt({ sub: "alice", nonce, exp: Math.floor(Date.now() / 1000) + 3600 });
    const fetchMock = vi.fn(async () => json({ id_token: id, refresh_token: "r1", expires_in: 3600 }, tokenStatus));
    vi.stubGlobal("fetch", fetchMock);
    const auth = new OidcAuth(OIDC, "https://app.example/");
    const outcome = await auth.complete(`?code=c0de&state=${state}`).then(
      () => null,
      (e: Error) => e.message,
    );
    return { auth, id, fetchMock, outcome };
  }

  it("exchanges the code with the verifier, checks the nonce, and returns to the conversation", async () => {
    history.replaceState(null, "", "/?code=c0de&state=s1");
    const { auth, id, fetchMock, outcome } = await returnWith("s1", "n1");
    expect(outcome).toBeNull();
    expect(await auth.token()).toBe(id);
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe(OIDC.token_endpoint);
    const form = new URLSearchParams(init.body as URLSearchParams);
    expect(Object.fromEntries(form)).toEqual({
      grant_type: "authorization_code",
      code: "c0de",
      redirect_uri: "https://app.example/",
      client_id: "conversa-web",
      code_verifier: "v".repeat(43),
    });
    expect(location.search).toBe("");
    expect(location.hash).toBe("#/c/42");
    expect(sessionStorage.getItem(OIDC_PENDING_KEY)).toBeNull();
    expect(sessionStorage.getItem(OIDC_AUTO_KEY)).toBe("1");
  });

  it("refuses a return with another state, and never exchanges its code", async () => {
    const { auth, fetchMock, outcome } = await returnWith("forged", "n1");
    expect(outcome).toMatch(/started elsewhere/);
    expect(fetchMock).not.toHaveBeenCalled();
    expect(await auth.token()).toBeNull();
  });

  it("refuses an ID token with another nonce", async () => {
    const { auth, outcome } = await returnWith("s1", "replayed");
    expect(outcome).toMatch(/could not be verified/);
    expect(await auth.token()).toBeNull();
  });

  it("renews with the refresh token, once for concurrent callers", async () => {
    const { auth } = await returnWith("s1", "n1");
    const fresh = jwt({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 3600 });
    const fetchMock = vi.fn(async () => json({ id_token: fresh, expires_in: 3600 }));
    vi.stubGlobal("fetch", fetchMock);
    const [a, b] = await Promise.all([auth.renew(), auth.renew()]);
    expect([a, b]).toEqual([true, true]);
    expect(fetchMock).toHaveBeenCalledTimes(1);
    const form = new URLSearchParams((fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1].body as URLSearchParams);
    expect(form.get("grant_type")).toBe("refresh_token");
    expect(form.get("refresh_token")).toBe("r1");
    expect(await auth.token()).toBe(fresh);
  });

  it("schedules the renewal a minute before the ID token expires", async () => {
    vi.useFakeTimers();
    const { auth } = await returnWith("s1", "n1");
    const fetchMock = vi.fn(async () =>
      json({ id_token: jwt({ exp: Math.floor(Date.now() / 1000) + 3600 }), expires_in: 3600 }),
    );
    vi.stubGlobal("fetch", fetchMock);
    await vi.advanceTimersByTimeAsync(3600_000 - 61_000);
    expect(fetchMock).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(fetchMock).toHaveBeenCalledTimes(1);
    expect(auth.signedIn).toBe(true);
  });
});

describe("LocalAuth", () => {
  const session = (access: string, refresh: string) => ({
    user: { id: "u1", email: "a@example.com", name: null, role: "admin", tier: "default", auth: "local" },
    access_token: access,
    expires_in: 900,
    refresh_token: refresh,
  });

  it("keeps the refresh token, rotates it single-flight, and signs out on the server", async () => {
    const calls: { path: string; body: Record<string, string> }[] = [];
    let n = 0;
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init: RequestInit) => {
        const path = new URL(url, "https://app.example").pathname;
        calls.push({ path, body: JSON.parse(init.body as string) });
        n++;
        if (path === "/api/auth/logout") return new Response(null, { status: 204 });
        return json(session(`access-${n}`, `cvr_${n}`));
      }),
    );
    const auth = new LocalAuth("https://app.example");
    await auth.login("a@example.com", "correct horse");
    expect(localStorage.getItem(REFRESH_KEY)).toBe("cvr_1");
    expect(await auth.token()).toBe("access-1");
    const [a, b, c] = await Promise.all([auth.renew(), auth.renew(), auth.renew()]);
    expect([a, b, c]).toEqual([true, true, true]);
    const refreshes = calls.filter((x) => x.path === "/api/auth/refresh");
    expect(refreshes).toEqual([{ path: "/api/auth/refresh", body: { refresh_token: "cvr_1" } }]);
    expect(localStorage.getItem(REFRESH_KEY)).toBe("cvr_2");
    expect(await auth.token()).toBe("access-2");
    await auth.signOut();
    expect(calls.at(-1)).toEqual({ path: "/api/auth/logout", body: { refresh_token: "cvr_2" } });
    expect(localStorage.getItem(REFRESH_KEY)).toBeNull();
    expect(await auth.token()).toBeNull();
  });

  it("forgets a refresh token the server refuses, and says the sign-in ended", async () => {
    localStorage.setItem(REFRESH_KEY, "cvr_old");
    vi.stubGlobal("fetch", vi.fn(async () => json({ error: { code: "unauthorized", message: "x" } }, 401)));
    const auth = new LocalAuth("");
    const ended = vi.fn();
    auth.onEnded = ended;
    expect(await auth.resume()).toBe(false);
    expect(localStorage.getItem(REFRESH_KEY)).toBeNull();
    expect(ended).toHaveBeenCalledTimes(1);
  });

  it("shows the server's reason when a sign-in is refused", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => json({ error: { code: "rate_limited", message: "Too many failed sign-ins. Try again in 15 min." } }, 429)),
    );
    await expect(new LocalAuth("").login("a@example.com", "x")).rejects.toMatchObject({
      message: "Too many failed sign-ins. Try again in 15 min.",
      status: 429,
    });
  });
});

describe("Api with a sign-in", () => {
  it("sends the bearer token, renews once on a 401 and retries", async () => {
    const api = new Api({ apiBase: "", maxUploadBytes: 1 });
    let token = "old";
    api.credentials = {
      token: async () => token,
      renew: vi.fn(async () => {
        token = "new";
        return true;
      }),
    };
    const seen: (string | null)[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_url: string, init: RequestInit) => {
        const auth = new Headers(init.headers).get("Authorization");
        seen.push(auth);
        return auth === "Bearer new" ? json({ items: [], next_cursor: null }) : json({ error: { code: "unauthorized", message: "x" } }, 401);
      }),
    );
    await api.listConversations({});
    expect(seen).toEqual(["Bearer old", "Bearer new"]);
  });

  it("says the sign-in ended when the renewed token is refused too", async () => {
    const api = new Api({ apiBase: "", maxUploadBytes: 1 });
    api.credentials = { token: async () => "t", renew: async () => false };
    const ended = vi.fn();
    api.onSignedOut = ended;
    vi.stubGlobal("fetch", vi.fn(async () => json({ error: { code: "unauthorized", message: "Sign in" } }, 401)));
    await expect(api.me()).rejects.toMatchObject({ code: "unauthorized" });
    expect(ended).toHaveBeenCalledTimes(1);
  });

  it("takes a server without sign-in routes as mode none", async () => {
    const api = new Api({ apiBase: "", maxUploadBytes: 1 });
    vi.stubGlobal("fetch", vi.fn(async () => json({ error: { code: "not_found", message: "x" } }, 404)));
    expect((await api.authConfig()).mode).toBe("none");
  });
});
