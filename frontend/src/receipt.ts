/** An answer's receipt (`usage` on a stored answer and on `done`), in words for its tooltip. */

import type { Receipt } from "./types";

const whole = new Intl.NumberFormat("en-US");

/** Dollars with enough digits to show a cheap answer: `$0.0045`, `$1.25`, `$0` for free ones. */
export function formatCost(usd: number): string {
  if (usd === 0) return "$0";
  if (usd >= 1) return `$${usd.toFixed(2)}`;
  // Two significant digits below a dollar.
  const digits = Math.min(8, Math.max(2, 1 - Math.floor(Math.log10(usd))));
  return `$${usd.toFixed(digits).replace(/0+$/, "").replace(/\.$/, "")}`;
}

/** Milliseconds as `420 ms` or `3.1 s`. */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The lines of a receipt: model, tokens, cost, time to first token, duration. */
export function receiptLines(r: Receipt): string[] {
  const lines = [
    `Model: ${r.model} (${r.provider})`,
    `Tokens: ${whole.format(r.prompt_tokens)} in, ${whole.format(r.completion_tokens)} out`,
    `Cost: ${r.cost_usd === null || r.cost_usd === undefined ? "no price known" : formatCost(r.cost_usd)}`,
  ];
  if (r.time_to_first_token_ms !== null && r.time_to_first_token_ms !== undefined) {
    lines.push(`First token: ${formatMs(r.time_to_first_token_ms)}`);
  }
  lines.push(`Duration: ${formatMs(r.duration_ms)}`);
  return lines;
}
