/**
 * Signing in, per the mode `GET /api/auth/config` reports:
 *
 * - `local`: email and password against `/api/auth/*`. The access token lives in memory; the
 *   refresh token in localStorage (so a reload stays signed in). Refresh tokens rotate and a reused
 *   one ends the sign-in, so renewals are single-flight across tabs (Web Locks).
 * - `oidc`: the authorization-code flow with PKCE (S256), `state` and `nonce`, against the provider's
 *   own sign-in page. Tokens stay in memory only; the ID token is the bearer token, renewed with the
 *   refresh token a minute before it expires. Across the redirect only the verifier, state, nonce and
 *   the conversation the person was on are kept (sessionStorage), and put back on return.
 * - `tokens`: a token of `CONVERSA_AUTH_TOKENS` or an API key, pasted (sessionStorage).
 * - `none`: nothing to do.
 */

import type { AuthConfig, SessionReply } from "./types";

/** What the API client asks of a sign-in. */
export interface Credentials {
  /** A bearer token valid now (renewed first when about to expire), or null when signed out. */
  token(): Promise<string | null>;
  /** After a 401: renews once; whether a new token is ready. */
  renew(): Promise<boolean>;
}

/** Renew this long before the token expires. */
export const RENEW_BEFORE_MS = 60_000;
/** Never schedule a renewal sooner than this. */
const MIN_RENEW_DELAY_MS = 5_000;

export const REFRESH_KEY = "conversa.refresh";
export const TOKEN_KEY = "conversa.token";
export const OIDC_PENDING_KEY = "conversa.oidc.pending";
export const OIDC_AUTO_KEY = "conversa.oidc.auto";

/** base64url without padding. */
export function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** `n` random bytes, base64url. */
export function randomString(n = 32): string {
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

/** The PKCE S256 challenge of a verifier. */
export async function pkceChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** The claims of a JWT, unverified (the server verifies; the client reads `exp`, `nonce`). */
export function jwtClaims(token: string): Record<string, unknown> | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** When a token expires (ms since the epoch), from its `exp`, else from `expires_in`. */
export function expiryOf(token: string, expiresIn?: number, now = Date.now()): number {
  const exp = jwtClaims(token)?.exp;
  if (typeof exp === "number") return exp * 1000;
  return now + (expiresIn ?? 300) * 1000;
}

/** Runs `task` holding a lock shared by this site's tabs, when the browser has Web Locks. */
async function withLock<T>(name: string, task: () => Promise<T>): Promise<T> {
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  if (locks?.request) return locks.request(name, task) as Promise<T>;
  return task();
}

function storage(kind: "local" | "session"): Storage | null {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch {
    return null;
  }
}

/** Why signing in failed, for the sign-in screen. */
export class SignInError extends Error {
  constructor(
    message: string,
    readonly status = 0,
  ) {
    super(message);
    this.name = "SignInError";
  }
}

async function readError(res: Response, fallback: string): Promise<SignInError> {
  let message = fallback;
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not the API's error shape
  }
  return new SignInError(message, res.status);
}

/** A single-flight renewal, scheduled a minute before expiry. */
abstract class Renewing implements Credentials {
  protected access: string | null = null;
  protected expiresAt = 0;
  private timer: number | undefined;
  private inflight: Promise<boolean> | null = null;
  /** Called when the sign-in ends on its own (a renewal refused). */
  onEnded: (() => void) | null = null;

  protected abstract doRenew(): Promise<boolean>;

  protected accept(token: string, expiresIn?: number): void {
    this.access = token;
    this.expiresAt = expiryOf(token, expiresIn);
    window.clearTimeout(this.timer);
    const delay = Math.max(MIN_RENEW_DELAY_MS, this.expiresAt - Date.now() - RENEW_BEFORE_MS);
    this.timer = window.setTimeout(() => void this.renew(), delay);
  }

  protected clear(): void {
    this.access = null;
    this.expiresAt = 0;
    window.clearTimeout(this.timer);
  }

  get signedIn(): boolean {
    return this.access !== null;
  }

  async token(): Promise<string | null> {
    if (this.access && Date.now() > this.expiresAt - 5_000) await this.renew();
    return this.access;
  }

  renew(): Promise<boolean> {
    if (!this.inflight) {
      this.inflight = this.doRenew()
        .catch(() => false)
        .then((ok) => {
          this.inflight = null;
          if (!ok && this.access === null) this.onEnded?.();
          return ok;
        });
    }
    return this.inflight;
  }
}

/** Mode `local`. */
export class LocalAuth extends Renewing {
  constructor(private readonly base: string) {
    super();
  }

  private async post(path: string, body: unknown): Promise<Response> {
    return fetch(this.base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  private take(reply: SessionReply): SessionReply {
    storage("local")?.setItem(REFRESH_KEY, reply.refresh_token);
    this.accept(reply.access_token, reply.expires_in);
    return reply;
  }

  /** Signs in with email and password. */
  async login(email: string, password: string): Promise<SessionReply> {
    const res = await this.post("/api/auth/login", { email, password });
    if (!res.ok) throw await readError(res, "The email or password is wrong.");
    return this.take((await res.json()) as SessionReply);
  }

  /** Creates an account (the first one is the admin) and signs it in. */
  async register(email: string, password: string, name?: string): Promise<SessionReply> {
    const body: Record<string, string> = { email, password };
    if (name) body.name = name;
    const res = await this.post("/api/auth/register", body);
    if (!res.ok) throw await readError(res, "The account could not be created.");
    return this.take((await res.json()) as SessionReply);
  }

  /** Whether a refresh token is kept from an earlier visit. */
  get remembered(): boolean {
    return !!storage("local")?.getItem(REFRESH_KEY);
  }

  /** Signs in again with the kept refresh token (a reload). */
  resume(): Promise<boolean> {
    return this.renew();
  }

  protected async doRenew(): Promise<boolean> {
    return withLock("conversa-refresh", async () => {
      // Another tab may have rotated the token meanwhile: always use the one kept now.
      const kept = storage("local")?.getItem(REFRESH_KEY);
      if (!kept) {
        this.clear();
        return false;
      }
      const res = await this.post("/api/auth/refresh", { refresh_token: kept });
      if (!res.ok) {
        if (res.status === 401 || res.status === 403) {
          storage("local")?.removeItem(REFRESH_KEY);
          this.clear();
        }
        return false;
      }
      this.take((await res.json()) as SessionReply);
      return true;
    });
  }

  /** Signs out: the refresh token's family is revoked on the server. */
  async signOut(): Promise<void> {
    const kept = storage("local")?.getItem(REFRESH_KEY);
    storage("local")?.removeItem(REFRESH_KEY);
    this.clear();
    if (kept) {
      try {
        await this.post("/api/auth/logout", { refresh_token: kept });
      } catch {
        // signed out here either way
      }
    }
  }
}

interface Pending {
  verifier: string;
  state: string;
  nonce: string;
  returnTo: string;
}

interface TokenReply {
  id_token?: string;
  access_token?: string;
  refresh_token?: string;
  expires_in?: number;
}

/** Mode `oidc`: the authorization-code flow with PKCE. */
export class OidcAuth extends Renewing {
  private refreshToken: string | null = null;

  constructor(
    private readonly settings: NonNullable<AuthConfig["oidc"]>,
    private readonly redirectUri = location.origin + location.pathname,
  ) {
    super();
  }

  /** Whether this page is the provider's redirect back (`?code=&state=`, or `?error=`). */
  static isReturn(search = location.search): boolean {
    const p = new URLSearchParams(search);
    return p.has("state") && (p.has("code") || p.has("error"));
  }

  /** Whether to go to the provider without asking (signed in earlier in this tab). */
  static get auto(): boolean {
    return storage("session")?.getItem(OIDC_AUTO_KEY) === "1";
  }

  /** Sends the browser to the provider's sign-in page, remembering where it was. */
  async begin(returnTo = location.hash): Promise<void> {
    const pending: Pending = { verifier: randomString(32), state: randomString(16), nonce: randomString(16), returnTo };
    storage("session")?.setItem(OIDC_PENDING_KEY, JSON.stringify(pending));
    const url = new URL(this.settings.authorization_endpoint);
    url.search = new URLSearchParams({
      client_id: this.settings.client_id,
      response_type: "code",
      redirect_uri: this.redirectUri,
      scope: this.settings.scopes,
      state: pending.state,
      nonce: pending.nonce,
      code_challenge: await pkceChallenge(pending.verifier),
      code_challenge_method: "S256",
    }).toString();
    location.assign(url.toString());
  }

  /** Completes the redirect back: checks `state`, exchanges the code, checks `nonce`, and puts the
   * address back to where the person was. */
  async complete(search = location.search): Promise<void> {
    const params = new URLSearchParams(search);
    const raw = storage("session")?.getItem(OIDC_PENDING_KEY);
    storage("session")?.removeItem(OIDC_PENDING_KEY);
    const pending = raw ? (JSON.parse(raw) as Pending) : null;
    history.replaceState(null, "", location.pathname + (pending?.returnTo ?? ""));
    if (params.has("error")) {
      throw new SignInError(params.get("error_description") || "The sign-in was cancelled or refused.");
    }
    if (!pending || params.get("state") !== pending.state) {
      throw new SignInError("The sign-in could not be completed (it was started elsewhere). Please sign in again.");
    }
    const reply = await this.exchange({
      grant_type: "authorization_code",
      code: params.get("code") ?? "",
      redirect_uri: this.redirectUri,
      client_id: this.settings.client_id,
      code_verifier: pending.verifier,
    });
    const id = reply.id_token ?? "";
    if (jwtClaims(id)?.nonce !== pending.nonce) {
      this.clear();
      throw new SignInError("The sign-in could not be verified. Please sign in again.");
    }
    this.take(reply);
    storage("session")?.setItem(OIDC_AUTO_KEY, "1");
  }

  private async exchange(form: Record<string, string>): Promise<TokenReply> {
    const res = await fetch(this.settings.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form),
    });
    if (!res.ok) throw new SignInError("The identity provider refused the sign-in.", res.status);
    const reply = (await res.json()) as TokenReply;
    if (!reply.id_token) throw new SignInError("The identity provider sent no ID token.");
    return reply;
  }

  private take(reply: TokenReply): void {
    if (reply.refresh_token) this.refreshToken = reply.refresh_token;
    this.accept(reply.id_token ?? "", reply.expires_in);
  }

  protected async doRenew(): Promise<boolean> {
    if (!this.refreshToken) {
      this.clear();
      return false;
    }
    try {
      this.take(
        await this.exchange({
          grant_type: "refresh_token",
          refresh_token: this.refreshToken,
          client_id: this.settings.client_id,
        }),
      );
      return true;
    } catch (e) {
      if (e instanceof SignInError && e.status >= 400 && e.status < 500) {
        this.refreshToken = null;
        this.clear();
      }
      return false;
    }
  }

  /** Forgets the tokens (and no longer signs in by itself in this tab). */
  signOut(): void {
    this.refreshToken = null;
    this.clear();
    storage("session")?.removeItem(OIDC_AUTO_KEY);
  }
}

/** Mode `tokens`: a pasted token of `CONVERSA_AUTH_TOKENS`, or an API key. */
export class PastedToken implements Credentials {
  private value: string | null = storage("session")?.getItem(TOKEN_KEY) ?? null;

  get signedIn(): boolean {
    return this.value !== null;
  }

  set(token: string): void {
    this.value = token;
    storage("session")?.setItem(TOKEN_KEY, token);
  }

  async token(): Promise<string | null> {
    return this.value;
  }

  async renew(): Promise<boolean> {
    this.signOut();
    return false;
  }

  signOut(): void {
    this.value = null;
    storage("session")?.removeItem(TOKEN_KEY);
  }
}
