import { describe, expect, it } from "vitest";
import { barsOf, budgetLines, dailyTokens } from "../src/usage";
import type { UsageReply } from "../src/types";

const zero = { turns: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 };

const reply = (extra: Partial<UsageReply> = {}): UsageReply => ({
  from: "2026-12-01",
  to: "2026-12-04",
  totals: zero,
  by_day: [
    { day: "2026-12-02", turns: 2, prompt_tokens: 100, completion_tokens: 20, cost_usd: 0.5 },
    { day: "2026-12-04", turns: 1, prompt_tokens: 10, completion_tokens: 5, cost_usd: null },
  ],
  by_model: [],
  budget: {
    tier: "free",
    limits: { tokens_per_day: 1000, usd_per_month: 20 },
    used: { tokens_per_day: 250, tokens_per_month: 900, usd_per_day: 0.5, usd_per_month: 25 },
    resets_at: { day: "2026-12-05T00:00:00.000Z", month: "2027-01-01T00:00:00.000Z" },
  },
  ...extra,
});

describe("usage", () => {
  it("has a point for every day of the range, 0 where nothing was used", () => {
    expect(dailyTokens(reply())).toEqual({
      days: ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"],
      tokens: [0, 120, 0, 15],
      cost: [0, 0.5, 0, 0],
    });
  });

  it("shows only the budgets the tier sets, each as a share that stops at full", () => {
    const lines = budgetLines(reply());
    expect(lines.map((l) => [l.label, l.text, l.share])).toEqual([
      ["Tokens today", "250 of 1,000", 0.25],
      ["Spent this month", "$25.00 of $20.00", 1],
    ]);
    expect(budgetLines(reply({ budget: { ...reply().budget, limits: {} } }))).toEqual([]);
  });
});


describe("admin usage charts", () => {
  it("show the largest groups first", () => {
    const t = (key: string, p: number, c: number) => ({ key, turns: 1, prompt_tokens: p, completion_tokens: c, cost_usd: 0 });
    expect(barsOf({ items: [t("ann", 10, 5), t("bob", 100, 1), t("cy", 10, 5)], totals: zero })).toEqual({
      labels: ["bob", "ann", "cy"],
      tokens: [101, 15, 15],
    });
  });
});
