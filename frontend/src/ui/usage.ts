/** The usage dialog: this month's totals, the tier's budgets as bars, and tokens per day as a
 * chart (uPlot). */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Api } from "../api";
import { describeError, toApiError } from "../errors";
import { formatCost } from "../receipt";
import { budgetLines, dailyTokens } from "../usage";
import type { UsageReply } from "../types";
import { $, h } from "./dom";

const whole = new Intl.NumberFormat("en-US");

export class UsageDialog {
  private readonly dialog = $("usage-dialog") as HTMLDialogElement;
  private readonly chartEl = $("usage-chart");
  private chart: uPlot | null = null;

  constructor(private readonly api: Api) {
    $("usage-close").addEventListener("click", () => this.dialog.close());
  }

  async open(): Promise<void> {
    $("usage-error").hidden = true;
    $("usage-summary").textContent = "Loading…";
    if (!this.dialog.open) this.dialog.showModal();
    try {
      this.render(await this.api.usage());
    } catch (e) {
      $("usage-summary").textContent = "";
      const err = $("usage-error");
      err.textContent = `Couldn't load your usage. ${describeError(toApiError(e))}`;
      err.hidden = false;
    }
  }

  private render(u: UsageReply): void {
    const t = u.totals;
    const cost = t.cost_usd === null ? "cost unknown (a model has no price)" : formatCost(t.cost_usd);
    $("usage-summary").textContent =
      `${whole.format(t.turns)} ${t.turns === 1 ? "answer" : "answers"}, ` +
      `${whole.format(t.prompt_tokens + t.completion_tokens)} tokens, ${cost} ` +
      `(${u.from} to ${u.to}; tier ${u.budget.tier}).`;
    $("usage-budgets").replaceChildren(
      ...budgetLines(u).map((b) =>
        h(
          "li",
          { class: "usage-budget" },
          h("span", { class: "usage-budget-label", text: `${b.label}: ${b.text}` }),
          h("progress", { max: "1", value: String(b.share), "aria-label": `${b.label}: ${b.text}` }),
        ),
      ),
    );
    const series = dailyTokens(u);
    const xs = series.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
    this.chart?.destroy();
    this.chart = new uPlot(
      {
        width: Math.max(280, Math.min(640, this.chartEl.clientWidth || 560)),
        height: 200,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        legend: { show: false },
        axes: [{}, { size: 60 }],
        series: [
          {},
          {
            label: "Tokens",
            stroke: "#6366f1",
            fill: "rgba(99, 102, 241, 0.35)",
            paths: uPlot.paths.bars!({ size: [0.7, 40] }),
            points: { show: false },
          },
        ],
      },
      [xs, series.tokens],
      this.chartEl,
    );
    this.chartEl.dataset.points = String(xs.length);
  }
}
