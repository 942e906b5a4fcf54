/** Shapes of the Conversa HTTP API (v1), as the client uses them. */

export interface Conversation {
  id: string;
  title: string;
  message_count: number;
  created_at: string;
  updated_at: string;
  /** The leaf of the branch shown (the last message of `GET …/messages`). */
  current_message_id?: string | null;
  /** The answer being generated now, when there is one. */
  generating_message_id?: string | null;
}

export type FileStatus = "processing" | "ready" | "failed";
export type FileType = "pdf" | "docx" | "xlsx" | "xls" | "ods" | "csv" | "text" | "json" | "image";

export interface FileMeta {
  id: string;
  conversation_id: string | null;
  filename: string;
  content_type: string;
  size: number;
  file_type: FileType;
  status: FileStatus;
  char_count: number | null;
  token_count: number | null;
  pages: number | null;
  error: string | null;
  created_at: string;
  /** Extraction progress 0–100 while `status` is `processing`, when the server reports it. */
  progress?: number | null;
}

/** What an answer took, and which model gave it (`usage` on answers and on `done`). */
export interface Receipt {
  model: string;
  provider: string;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number | null;
  time_to_first_token_ms: number | null;
  duration_ms: number;
}

export interface Message {
  id: string;
  conversation_id: string;
  /** The message it follows; null for a first message. Siblings share a parent. */
  parent_id?: string | null;
  role: "user" | "assistant";
  content: string;
  files: FileMeta[];
  token_count: number | null;
  status: "complete" | "incomplete" | "error";
  created_at: string;
  /** The receipt of an answer (null on user messages and on answers no model started). */
  usage?: Receipt | null;
  /** The passages of files the answer cites with `[n]`, in order of first citation. */
  citations?: Citation[];
}

/** Where a passage of memory comes from: another conversation of the same user. */
export interface MemorySource {
  conversation_id: string;
  /** The message; null for a file attached to that conversation. */
  message_id: string | null;
  title: string;
}

/** A passage an answer cites: `[n]` in its text points here. */
export interface Citation {
  n: number;
  /** The file; null for a message of another conversation (memory). */
  file_id: string | null;
  filename: string | null;
  /** The page, for files with pages. */
  page: number | null;
  /** The sheet, for spreadsheets. */
  sheet: string | null;
  /** A short verbatim excerpt of the passage (at most 300 characters). */
  snippet: string;
  /** Set when the passage is memory: it comes from another of the user's conversations. */
  memory?: MemorySource | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Health {
  status: "ok" | "degraded" | string;
  checks?: Record<string, string>;
  version?: string;
  model?: string;
}

export type Provider = "openai" | "anthropic" | "bedrock" | "local";

/** One model of `GET /api/models`. */
export interface ModelInfo {
  id: string;
  name: string;
  provider: Provider | string;
  vision: boolean;
  context_tokens: number;
  default: boolean;
  price: { input: number; output: number } | null;
}

export interface MetaEvent {
  conversation_id: string;
  user_message_id: string;
  assistant_message_id: string;
  created_conversation: boolean;
  files: FileMeta[];
  model?: string;
}

export interface QueuedEvent {
  /** The answer's place in line for its model (1 = next). */
  position: number;
}

export interface TitleEvent {
  conversation_id: string;
  title: string;
}

export interface DoneEvent {
  message_id: string;
  /** `stopped` when someone stopped the answer. */
  finish_reason: string;
  usage?: Receipt;
  /** The passages the answer cites. */
  citations?: Citation[];
}

/** `GET /api/auth/config`: how people sign in. */
export interface AuthConfig {
  mode: "none" | "tokens" | "oidc" | "local";
  registration: "open" | "closed";
  /** Mode `local`: no account exists yet; the first to register becomes the admin. */
  first_account?: boolean;
  oidc: {
    issuer: string;
    client_id: string;
    authorization_endpoint: string;
    token_endpoint: string;
    scopes: string;
  } | null;
}

/** `GET /api/me`. */
export interface Me {
  id: string;
  email: string | null;
  name: string | null;
  role: "admin" | "user";
  tier: string;
  auth: AuthConfig["mode"];
}

/** A local sign-in (`/api/auth/login`, `/register`, `/refresh`). */
export interface SessionReply {
  user: Me;
  access_token: string;
  expires_in: number;
  refresh_token: string;
}

/** An API key as listed. */
export interface KeyItem {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
}

/** A new API key: `key` is shown this once. */
export interface NewKey {
  id: string;
  name: string;
  key: string;
  created_at: string;
}

/** Usage added up (`GET /api/usage`, `GET /api/admin/usage`). */
export interface UsageTotals {
  turns: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number | null;
}

/** The limits of a tier; an absent one is no limit. */
export interface TierLimits {
  turns_per_minute?: number;
  tokens_per_day?: number;
  tokens_per_month?: number;
  usd_per_day?: number;
  usd_per_month?: number;
}

/** A person as admins see them (`GET /api/admin/users`). */
export interface AdminUser {
  id: string;
  email: string | null;
  name: string | null;
  role: "admin" | "user";
  tier: string;
  disabled: boolean;
  created_at: string;
  last_active_at: string | null;
  usage_this_month: UsageTotals;
}

/** `GET /api/admin/usage`. */
export interface AdminUsage {
  items: (UsageTotals & { key: string })[];
  totals: UsageTotals;
}

/** `GET /api/usage`. */
export interface UsageReply {
  from: string;
  to: string;
  totals: UsageTotals;
  by_day: (UsageTotals & { day: string })[];
  by_model: (UsageTotals & { model: string })[];
  budget: {
    tier: string;
    limits: TierLimits;
    used: { tokens_per_day: number; tokens_per_month: number; usd_per_day: number; usd_per_month: number };
    resets_at: { day: string; month: string };
  };
}

/** One hit of `GET /api/search`. */
export interface SearchHit {
  kind: "message" | "file";
  conversation_id: string | null;
  message_id: string | null;
  file_id: string | null;
  title: string;
  snippet: string;
  score: number;
}

/** `GET /api/search`. */
export interface SearchReply {
  items: SearchHit[];
}
