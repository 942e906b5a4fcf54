/** The caller's usage (`GET /api/usage`) made ready to show: a day per point, budgets as shares. */

import type { AdminUsage, UsageReply } from "./types";

/** Every day from `from` to `to` (UTC, both included) with its tokens, 0 where nothing was used. */
export function dailyTokens(u: UsageReply): { days: string[]; tokens: number[]; cost: number[] } {
  const byDay = new Map(u.by_day.map((d) => [d.day, d]));
  const days: string[] = [];
  const tokens: number[] = [];
  const cost: number[] = [];
  const end = Date.parse(`${u.to}T00:00:00Z`);
  for (let t = Date.parse(`${u.from}T00:00:00Z`); t <= end && days.length < 400; t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    const d = byDay.get(day);
    days.push(day);
    tokens.push(d ? d.prompt_tokens + d.completion_tokens : 0);
    cost.push(d?.cost_usd ?? 0);
  }
  return { days, tokens, cost };
}

/** One budget of the caller's tier: what is used of it, in words and as a share (0–1). */
export interface BudgetLine {
  label: string;
  used: number;
  limit: number;
  share: number;
  text: string;
}

const whole = new Intl.NumberFormat("en-US");
const money = (usd: number): string => `$${usd.toFixed(2)}`;

/** The tier's budgets that are set, each with what is used of it now. */
export function budgetLines(u: UsageReply): BudgetLine[] {
  const b = u.budget;
  const lines: BudgetLine[] = [];
  const add = (label: string, used: number, limit: number | undefined, format: (n: number) => string) => {
    if (limit === undefined || limit === null) return;
    const share = limit > 0 ? Math.min(1, used / limit) : 1;
    lines.push({ label, used, limit, share, text: `${format(used)} of ${format(limit)}` });
  };
  add("Tokens today", b.used.tokens_per_day, b.limits.tokens_per_day, (n) => whole.format(n));
  add("Tokens this month", b.used.tokens_per_month, b.limits.tokens_per_month, (n) => whole.format(n));
  add("Spent today", b.used.usd_per_day, b.limits.usd_per_day, money);
  add("Spent this month", b.used.usd_per_month, b.limits.usd_per_month, money);
  return lines;
}

/** Bars of tokens per group (`key`), largest first, at most 20. */
export function barsOf(usage: AdminUsage): { labels: string[]; tokens: number[] } {
  const items = [...usage.items]
    .map((i) => ({ key: i.key, tokens: i.prompt_tokens + i.completion_tokens }))
    .sort((a, b) => b.tokens - a.tokens || a.key.localeCompare(b.key))
    .slice(0, 20);
  return { labels: items.map((i) => i.key), tokens: items.map((i) => i.tokens) };
}
