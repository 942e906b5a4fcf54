/**
 * HTTP client for the Conversa API: JSON routes, uploads with progress, and the chat streams —
 * a turn sent or regenerated, and a turn followed from any event id (after a reload, in another
 * tab, or when the connection dropped).
 */

import type { Credentials } from "./auth";
import type { AppConfig } from "./config";
import { ApiError, STREAM_INTERRUPTED, errorFromBody, errorFromResponse, toApiError } from "./errors";
import { readSse } from "./sse";
import type {
  AuthConfig,
  Conversation,
  DoneEvent,
  FileMeta,
  Health,
  KeyItem,
  Me,
  Message,
  MetaEvent,
  ModelInfo,
  NewKey,
  Page,
  QueuedEvent,
  SearchReply,
  TitleEvent,
  UsageReply,
  AdminUser,
  AdminUsage,
} from "./types";
import { buildListUrl } from "./pagination";

export interface ChatRequest {
  message: string;
  conversationId?: string | null;
  fileIds?: string[];
  model?: string;
  /** The message the new one follows: absent, the current leaf; null, none (a new first message). */
  parentId?: string | null;
}

export interface ChatHandlers {
  onMeta?(meta: MetaEvent): void;
  onQueued?(queued: QueuedEvent): void;
  onToken?(text: string): void;
  onTitle?(title: TitleEvent): void;
  onDone?(done: DoneEvent): void;
  /** Every event's id, after the event was handled: where a resumed stream starts from. */
  onEventId?(id: number): void;
}

export type StopStatus = "stopping" | "finished";

export interface UploadHandle {
  promise: Promise<FileMeta>;
  abort(): void;
}

/** Called with every network-level failure, so the app can check the server's health at once. */
export type NetworkFailureListener = () => void;

export class Api {
  private readonly base: string;
  onNetworkFailure: NetworkFailureListener | null = null;
  /** The sign-in whose token goes with every request; null without sign-in (mode `none`). */
  credentials: Credentials | null = null;
  /** Called when the server refuses the credentials even after a renewal (401), or the account
   * (403 on a signed-in request, with `forbidden` for a disabled account). */
  onSignedOut: ((reason: ApiError) => void) | null = null;

  constructor(config: AppConfig) {
    this.base = config.apiBase;
  }

  url(path: string): string {
    return this.base + path;
  }

  /** Whether requests carry a bearer token (plain links and images then cannot reach files). */
  get authenticated(): boolean {
    return this.credentials !== null;
  }

  private async withAuth(headers: HeadersInit | undefined): Promise<Headers> {
    const h = new Headers(headers);
    const token = await this.credentials?.token();
    if (token) h.set("Authorization", `Bearer ${token}`);
    return h;
  }

  /** fetch with the bearer token; a 401 renews the token once and tries again. */
  private async authFetch(url: string, init: RequestInit = {}): Promise<Response> {
    let res = await fetch(url, { ...init, headers: await this.withAuth(init.headers) });
    if (res.status === 401 && this.credentials && (await this.credentials.renew())) {
      res = await fetch(url, { ...init, headers: await this.withAuth(init.headers) });
    }
    return res;
  }

  /** Tells the app when the sign-in no longer works. */
  private async refused(res: Response): Promise<ApiError> {
    const err = await errorFromResponse(res);
    if (this.credentials && (err.status === 401 || (err.status === 403 && /disabled/i.test(err.message)))) {
      this.onSignedOut?.(err);
    }
    return err;
  }

  private async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    let res: Response;
    try {
      res = await this.authFetch(this.url(path), init);
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      this.onNetworkFailure?.();
      throw toApiError(e);
    }
    if (!res.ok) throw await this.refused(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  private json(method: string, body: unknown): RequestInit {
    return { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }

  /** How people sign in; a server without the route is taken as mode `none`. */
  async authConfig(): Promise<AuthConfig> {
    const res = await fetch(this.url("/api/auth/config"), { cache: "no-store" });
    if (res.status === 404) return { mode: "none", registration: "closed", oidc: null };
    if (!res.ok) throw await errorFromResponse(res);
    return (await res.json()) as AuthConfig;
  }

  /** Who is signed in. */
  me(): Promise<Me> {
    return this.request<Me>("/api/me", { cache: "no-store" });
  }

  /** The caller's API keys. */
  /** Admins: everyone, with this month's usage (first 200). */
  async adminUsers(): Promise<AdminUser[]> {
    return (await this.request<Page<AdminUser>>("/api/admin/users?limit=200", { cache: "no-store" })).items;
  }

  /** Admins: changes a person's tier or whether they are disabled. */
  changeUser(id: string, change: { tier?: string; disabled?: boolean }): Promise<AdminUser> {
    return this.request<AdminUser>(`/api/admin/users/${encodeURIComponent(id)}`, this.json("PATCH", change));
  }

  /** Admins: everyone's usage this month, grouped. */
  adminUsage(groupBy: "user" | "model" | "day"): Promise<AdminUsage> {
    return this.request<AdminUsage>(`/api/admin/usage?group_by=${groupBy}`, { cache: "no-store" });
  }

  /** The caller's usage (default: this month) and budget. */
  usage(): Promise<UsageReply> {
    return this.request<UsageReply>("/api/usage", { cache: "no-store" });
  }

  async listKeys(): Promise<KeyItem[]> {
    const page = await this.request<Page<KeyItem>>("/api/keys?limit=200", { cache: "no-store" });
    return page.items;
  }

  /** A new API key (its `key` is shown this once). */
  createKey(name: string): Promise<NewKey> {
    return this.request<NewKey>("/api/keys", this.json("POST", { name }));
  }

  deleteKey(id: string): Promise<void> {
    return this.request<void>(`/api/keys/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** A file's extracted text (`[page N]` / `## Sheet: X` markers where the extractor made them). */
  fileText(id: string): Promise<{ file_id: string; text: string }> {
    return this.request(`/api/files/${encodeURIComponent(id)}/text`, { cache: "no-store" });
  }

  /** A file's bytes as an object URL, fetched with the bearer token (signed-in modes). */
  async fileObjectUrl(id: string): Promise<string> {
    const res = await this.authFetch(this.downloadUrl(id));
    if (!res.ok) throw await this.refused(res);
    return URL.createObjectURL(await res.blob());
  }

  health(): Promise<Health> {
    // /health answers 503 with the same body when degraded: read it either way.
    return fetch(this.url("/health"), { cache: "no-store" }).then(async (res) => {
      try {
        return (await res.json()) as Health;
      } catch {
        if (!res.ok) throw await errorFromResponse(res);
        return { status: "ok" };
      }
    });
  }

  /** The models on offer (`GET /api/models`). */
  async listModels(): Promise<ModelInfo[]> {
    const list = await this.request<{ items: ModelInfo[] }>("/api/models", { cache: "no-store" });
    return Array.isArray(list?.items) ? list.items : [];
  }

  listConversations(opts: { limit?: number; cursor?: string | null; q?: string }, signal?: AbortSignal) {
    return this.request<Page<Conversation>>(buildListUrl("/api/conversations", opts), { signal });
  }

  /** The caller's messages and file passages that match `q`, by meaning and by words. */
  search(q: string, limit: number, signal?: AbortSignal) {
    const qs = new URLSearchParams({ q, limit: String(limit) });
    return this.request<SearchReply>(`/api/search?${qs.toString()}`, { signal });
  }

  getConversation(id: string) {
    return this.request<Conversation>(`/api/conversations/${encodeURIComponent(id)}`);
  }

  /**
   * The messages of a conversation, oldest first: its current branch, or with `all` every message
   * of its tree (follows the cursor when the server pages them).
   */
  async listMessages(id: string, opts: { all?: boolean } = {}): Promise<Message[]> {
    const out: Message[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 100; i++) {
      let path = buildListUrl(`/api/conversations/${encodeURIComponent(id)}/messages`, { limit: 200, cursor });
      if (opts.all) path += `${path.includes("?") ? "&" : "?"}all=true`;
      const page: Page<Message> | Message[] = await this.request(path);
      if (Array.isArray(page)) return page;
      out.push(...page.items);
      if (!page.next_cursor || page.items.length === 0) break;
      cursor = page.next_cursor;
    }
    return out;
  }

  renameConversation(id: string, title: string) {
    return this.request<Conversation>(`/api/conversations/${encodeURIComponent(id)}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ title }),
    });
  }

  /** Shows the branch through `messageId` (its latest descendant becomes the current leaf). */
  setCurrent(conversationId: string, messageId: string) {
    return this.request<Conversation>(`/api/conversations/${encodeURIComponent(conversationId)}/current`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message_id: messageId }),
    });
  }

  /** Stops the turn whose answer is `messageId`, on whichever server generates it. */
  async stopTurn(messageId: string): Promise<StopStatus> {
    const r = await this.request<{ status: StopStatus }>(`/api/chat/stop/${encodeURIComponent(messageId)}`, {
      method: "POST",
    });
    return r.status;
  }

  deleteConversation(id: string) {
    return this.request<void>(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  getFile(id: string) {
    return this.request<FileMeta>(`/api/files/${encodeURIComponent(id)}`, { cache: "no-store" });
  }

  downloadUrl(id: string): string {
    return this.url(`/api/files/${encodeURIComponent(id)}/download`);
  }

  /** Uploads one file with XMLHttpRequest, reporting the fraction of bytes sent (0–1). */
  uploadFile(file: File, conversationId: string | null, onProgress: (fraction: number) => void): UploadHandle {
    const xhr = new XMLHttpRequest();
    let aborted = false;
    const promise = new Promise<FileMeta>((resolve, reject) => {
      const form = new FormData();
      form.append("file", file, file.name);
      if (conversationId) form.append("conversation_id", conversationId);
      xhr.open("POST", this.url("/api/files"));
      xhr.responseType = "text";
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve(JSON.parse(xhr.responseText) as FileMeta);
          } catch {
            reject(new ApiError(xhr.status, "internal", "The server's answer could not be read"));
          }
        } else {
          reject(errorFromBody(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
        }
      };
      xhr.onerror = () => {
        this.onNetworkFailure?.();
        reject(toApiError(new Error("network error during upload")));
      };
      xhr.onabort = () => reject(new DOMException("Upload cancelled", "AbortError"));
      const send = (token: string | null | undefined) => {
        if (aborted) return reject(new DOMException("Upload cancelled", "AbortError"));
        if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
        xhr.send(form);
      };
      if (this.credentials) {
        this.credentials.token().then(send, () => send(null));
      } else {
        send(null);
      }
    });
    return {
      promise,
      abort: () => {
        aborted = true;
        xhr.abort();
      },
    };
  }

  /**
   * Sends a chat turn and reads the SSE answer. Resolves when `done` arrives; rejects with an
   * ApiError on a refusal, an `error` event or a stream that ends early, and with an AbortError
   * when `signal` aborts.
   */
  async sendChat(req: ChatRequest, handlers: ChatHandlers, signal: AbortSignal): Promise<DoneEvent> {
    const form = new FormData();
    form.append("message", req.message);
    if (req.conversationId) form.append("conversation_id", req.conversationId);
    for (const id of req.fileIds ?? []) form.append("file_ids", id);
    if (req.model) form.append("model", req.model);
    // A blank parent_id is null: a new first message.
    if (req.parentId !== undefined) form.append("parent_id", req.parentId ?? "");
    return this.streamTurn("/api/chat/send", { method: "POST", body: form }, handlers, signal);
  }

  /** A new answer to the question `messageId` answered, streamed like a sent turn. */
  regenerate(messageId: string, model: string | undefined, handlers: ChatHandlers, signal: AbortSignal): Promise<DoneEvent> {
    const body: Record<string, string> = { message_id: messageId };
    if (model) body.model = model;
    return this.streamTurn(
      "/api/chat/regenerate",
      { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } },
      handlers,
      signal,
    );
  }

  /** Follows the turn whose answer is `messageId`: every event after `after`, then live ones. */
  followTurn(messageId: string, after: number, handlers: ChatHandlers, signal: AbortSignal): Promise<DoneEvent> {
    return this.streamTurn(
      `/api/chat/stream/${encodeURIComponent(messageId)}`,
      { method: "GET", headers: { "Last-Event-ID": String(after) }, cache: "no-store" },
      handlers,
      signal,
    );
  }

  /** Opens a turn's SSE stream and dispatches its events until `done` (or an error). */
  private async streamTurn(path: string, init: RequestInit, handlers: ChatHandlers, signal: AbortSignal): Promise<DoneEvent> {
    let res: Response;
    try {
      res = await this.authFetch(this.url(path), {
        ...init,
        headers: { Accept: "text/event-stream", ...(init.headers as Record<string, string> | undefined) },
        signal,
      });
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      this.onNetworkFailure?.();
      throw toApiError(e);
    }
    if (!res.ok) throw await this.refused(res);
    if (!res.body) throw new ApiError(res.status, STREAM_INTERRUPTED, "empty response");
    try {
      for await (const ev of readSse(res.body)) {
        let data: unknown;
        try {
          data = JSON.parse(ev.data);
        } catch {
          continue; // not JSON: ignore rather than break the answer
        }
        const id = ev.id !== undefined && /^\d+$/.test(ev.id) ? Number(ev.id) : null;
        switch (ev.event) {
          case "meta":
            handlers.onMeta?.(data as MetaEvent);
            break;
          case "queued":
            handlers.onQueued?.(data as QueuedEvent);
            break;
          case "token":
            handlers.onToken?.((data as { text?: string }).text ?? "");
            break;
          case "title":
            handlers.onTitle?.(data as TitleEvent);
            break;
          case "done":
            if (id !== null) handlers.onEventId?.(id);
            handlers.onDone?.(data as DoneEvent);
            return data as DoneEvent;
          case "error": {
            if (id !== null) handlers.onEventId?.(id);
            const d = data as { code?: string; message?: string };
            throw new ApiError(200, d.code || "upstream_error", d.message || "");
          }
          default:
            break;
        }
        if (id !== null) handlers.onEventId?.(id);
      }
    } catch (e) {
      if (e instanceof ApiError) throw e;
      if ((e as Error).name === "AbortError" || signal.aborted) throw e;
      throw new ApiError(0, STREAM_INTERRUPTED, (e as Error).message);
    }
    throw new ApiError(0, STREAM_INTERRUPTED, "the stream ended without a final event");
  }
}
