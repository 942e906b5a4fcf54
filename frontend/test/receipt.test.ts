import { describe, expect, it } from "vitest";
import { formatCost, formatMs, receiptLines } from "../src/receipt";
import type { Receipt } from "../src/types";

const receipt = (extra: Partial<Receipt> = {}): Receipt => ({
  model: "gpt-4o",
  provider: "openai",
  prompt_tokens: 12345,
  completion_tokens: 678,
  cost_usd: 0.004581,
  time_to_first_token_ms: 420,
  duration_ms: 3100,
  ...extra,
});

describe("receipts", () => {
  it("say the model, tokens, cost and times", () => {
    expect(receiptLines(receipt())).toEqual([
      "Model: gpt-4o (openai)",
      "Tokens: 12,345 in, 678 out",
      "Cost: $0.0046",
      "First token: 420 ms",
      "Duration: 3.1 s",
    ]);
  });

  it("say when a model has no price and leave out a first token that never came", () => {
    const lines = receiptLines(receipt({ cost_usd: null, time_to_first_token_ms: null }));
    expect(lines).toContain("Cost: no price known");
    expect(lines.some((l) => l.startsWith("First token"))).toBe(false);
  });

  it("format costs and durations", () => {
    expect(formatCost(0)).toBe("$0");
    expect(formatCost(1.25)).toBe("$1.25");
    expect(formatCost(0.12)).toBe("$0.12");
    expect(formatCost(0.0000042)).toBe("$0.0000042");
    expect(formatMs(999)).toBe("999 ms");
    expect(formatMs(61_000)).toBe("61.0 s");
  });
});
