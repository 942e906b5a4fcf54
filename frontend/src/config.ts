/** Deployment settings read from `config.json` next to `index.html`. */

export interface AppConfig {
  /** Base URL of the API; empty means the same origin as the page. */
  apiBase: string;
  /** Largest file accepted for upload, in bytes. */
  maxUploadBytes: number;
}

export const DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024;

export const defaultConfig: AppConfig = { apiBase: "", maxUploadBytes: DEFAULT_MAX_UPLOAD_BYTES };

/** Normalises a parsed `config.json`; unknown or malformed values fall back to the defaults. */
export function parseConfig(raw: unknown): AppConfig {
  const cfg: AppConfig = { ...defaultConfig };
  if (raw && typeof raw === "object") {
    const r = raw as Record<string, unknown>;
    if (typeof r.apiBase === "string") cfg.apiBase = r.apiBase.replace(/\/+$/, "");
    if (typeof r.maxUploadBytes === "number" && Number.isFinite(r.maxUploadBytes) && r.maxUploadBytes > 0) {
      cfg.maxUploadBytes = Math.floor(r.maxUploadBytes);
    }
  }
  return cfg;
}

/** Fetches `config.json`; a missing or broken file means the defaults. */
export async function loadConfig(url = "config.json"): Promise<AppConfig> {
  try {
    const res = await fetch(url, { cache: "no-store" });
    if (!res.ok) return { ...defaultConfig };
    return parseConfig(await res.json());
  } catch {
    return { ...defaultConfig };
  }
}
