/** The API's error shape turned into an exception, and into plain words for people. */

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds from the `Retry-After` header, for `rate_limited`. */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, message: string, retryAfter: number | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Codes used by the client itself, for failures that never reached an API answer. */
export const NETWORK_ERROR = "network_error";
export const STREAM_INTERRUPTED = "stream_interrupted";

const CODE_BY_STATUS: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "unprocessable",
  429: "rate_limited",
  502: "upstream_error",
  503: "unavailable",
  500: "internal",
};

/** Parses `Retry-After` (seconds or an HTTP date) into whole seconds. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return parseInt(v, 10);
  const t = Date.parse(v);
  if (Number.isNaN(t)) return null;
  return Math.max(0, Math.ceil((t - now) / 1000));
}

/** Builds an ApiError from a status, a body text and a Retry-After header. */
export function errorFromBody(status: number, bodyText: string, retryAfterHeader: string | null): ApiError {
  let code = CODE_BY_STATUS[status] ?? (status >= 500 ? "internal" : "bad_request");
  let message = "";
  try {
    const body = JSON.parse(bodyText) as { error?: { code?: unknown; message?: unknown } };
    if (body && body.error) {
      if (typeof body.error.code === "string" && body.error.code) code = body.error.code;
      if (typeof body.error.message === "string") message = body.error.message;
    }
  } catch {
    // Not the JSON error shape (a proxy page, say): keep the status-derived code.
  }
  return new ApiError(status, code, message, parseRetryAfter(retryAfterHeader));
}

/** Turns a Response that is not ok into an ApiError. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    // body unreadable: the status alone decides
  }
  return errorFromBody(res.status, text, res.headers.get("Retry-After"));
}

/** Converts anything thrown into an ApiError (network failures included). */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError(0, NETWORK_ERROR, e instanceof Error ? e.message : String(e));
}

/** Codes whose server message is technical: shown apart, under "Details", not in the sentence. */
export function technicalDetail(err: { code: string; message?: string }): string | null {
  if (!err.message) return null;
  return ["upstream_error", "internal", "unavailable", STREAM_INTERRUPTED, NETWORK_ERROR].includes(err.code)
    ? err.message
    : null;
}

/**
 * A sentence for people. The server's message is shown when it adds detail that the
 * code alone cannot give (which file, which limit).
 */
export function describeError(err: { code: string; message?: string; retryAfter?: number | null }): string {
  const detail = err.message ? ` (${err.message.replace(/\.$/, "")})` : "";
  switch (err.code) {
    case "rate_limited":
      return err.retryAfter != null
        ? `You're sending messages too quickly. You can send again in ${err.retryAfter} s.`
        : "You're sending messages too quickly. Please wait a moment and try again.";
    case "payload_too_large":
      return err.message ? `That file is too large: ${err.message}.` : "That file is too large to upload.";
    case "unsupported_media_type":
      return `That file type isn't supported, or the file's content doesn't match its type${detail}.`;
    case "unprocessable":
      return err.message ? `That couldn't be processed: ${err.message}.` : "That couldn't be processed.";
    case "bad_request":
      return err.message ? `The request wasn't accepted: ${err.message}.` : "The request wasn't accepted.";
    case "unauthorized":
      return "You're not signed in, or your session has expired.";
    case "forbidden":
      return err.message || "You're not allowed to do that.";
    case "conflict":
      return err.message || "That conflicts with something that exists already.";
    case "not_found":
      return "That conversation or file doesn't exist (it may have been deleted).";
    case "upstream_error":
      return "The AI model failed to answer. Please try again.";
    case "unavailable":
      return "The service is temporarily unavailable. Please try again shortly.";
    case NETWORK_ERROR:
      return "Couldn't reach the server. Check your connection and try again.";
    case STREAM_INTERRUPTED:
      return "The connection was lost before the answer finished.";
    case "internal":
      return "Something went wrong on the server. Please try again.";
    default:
      return err.message || "Something went wrong. Please try again.";
  }
}
