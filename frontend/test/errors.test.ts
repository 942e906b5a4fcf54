import { describe, expect, it } from "vitest";
import { describeError, errorFromBody, parseRetryAfter } from "../src/errors";
import { parseConfig } from "../src/config";
import { conversationIdFromHash, hashForConversation } from "../src/router";

describe("errors", () => {
  it("reads the API error shape", () => {
    const e = errorFromBody(413, '{"error":{"code":"payload_too_large","message":"report.pdf is 14.2 MB; the limit is 10 MB"}}', null);
    expect(e.code).toBe("payload_too_large");
    expect(describeError(e)).toBe("That file is too large: report.pdf is 14.2 MB; the limit is 10 MB.");
  });

  it("falls back to the status when the body is not the error shape", () => {
    expect(errorFromBody(502, "<html>Bad gateway</html>", null).code).toBe("upstream_error");
    expect(errorFromBody(418, "", null).code).toBe("bad_request");
    expect(errorFromBody(599, "", null).code).toBe("internal");
  });

  it("parses Retry-After in seconds or as a date", () => {
    expect(parseRetryAfter("30")).toBe(30);
    expect(parseRetryAfter(null)).toBeNull();
    expect(parseRetryAfter("soon")).toBeNull();
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:12 GMT", now)).toBe(12);
  });

  it("says rate limits with the wait", () => {
    const e = errorFromBody(429, '{"error":{"code":"rate_limited","message":"slow down"}}', "7");
    expect(e.retryAfter).toBe(7);
    expect(describeError(e)).toBe("You're sending messages too quickly. You can send again in 7 s.");
  });

  it("has plain words for every documented code", () => {
    for (const code of ["bad_request", "unauthorized", "not_found", "payload_too_large", "unsupported_media_type",
      "unprocessable", "rate_limited", "upstream_error", "unavailable", "internal", "network_error"]) {
      const text = describeError({ code, message: "" });
      expect(text.length, code).toBeGreaterThan(10);
      if (code.includes("_")) expect(text, code).not.toContain(code);
    }
  });
});

describe("config", () => {
  it("defaults to the same origin and 10 MB", () => {
    expect(parseConfig({})).toEqual({ apiBase: "", maxUploadBytes: 10485760 });
    expect(parseConfig(null)).toEqual({ apiBase: "", maxUploadBytes: 10485760 });
  });
  it("takes apiBase (without trailing slash) and maxUploadBytes", () => {
    expect(parseConfig({ apiBase: "https://api.example.com/", maxUploadBytes: 5000 })).toEqual({
      apiBase: "https://api.example.com",
      maxUploadBytes: 5000,
    });
    expect(parseConfig({ maxUploadBytes: -1 }).maxUploadBytes).toBe(10485760);
  });
});

describe("router", () => {
  it("round-trips conversation ids through the hash", () => {
    for (const id of ["0192f0a1-7c1e-7000-8000-000000000001", "a b/c"]) {
      expect(conversationIdFromHash(hashForConversation(id))).toBe(id);
    }
    expect(conversationIdFromHash("#/")).toBeNull();
    expect(conversationIdFromHash("")).toBeNull();
    expect(conversationIdFromHash("#/c/")).toBeNull();
  });
});
