/** The admin page: everyone with their role, tier (editable), whether they are disabled
 * (editable) and this month's usage, and this month's tokens by person and by model as charts. */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Api } from "../api";
import { describeError, toApiError } from "../errors";
import { formatCost } from "../receipt";
import type { AdminUser, AdminUsage } from "../types";
import { barsOf } from "../usage";
import { $, h } from "./dom";

const whole = new Intl.NumberFormat("en-US");

export class AdminDialog {
  private readonly dialog = $("admin-dialog") as HTMLDialogElement;
  private charts: uPlot[] = [];

  constructor(private readonly api: Api) {
    $("admin-close").addEventListener("click", () => this.dialog.close());
  }

  async open(): Promise<void> {
    this.error("");
    if (!this.dialog.open) this.dialog.showModal();
    try {
      const [users, byUser, byModel] = await Promise.all([
        this.api.adminUsers(),
        this.api.adminUsage("user"),
        this.api.adminUsage("model"),
      ]);
      this.renderUsers(users);
      for (const c of this.charts) c.destroy();
      this.charts = [this.chart("admin-by-user", byUser), this.chart("admin-by-model", byModel)];
    } catch (e) {
      this.error(`Couldn't load people and usage. ${describeError(toApiError(e))}`);
    }
  }

  private error(text: string): void {
    const el = $("admin-error");
    el.textContent = text;
    el.hidden = !text;
  }

  private renderUsers(users: AdminUser[]): void {
    const body = $("admin-users").querySelector("tbody")!;
    body.replaceChildren(...users.map((u) => this.row(u)));
  }

  private row(u: AdminUser): HTMLTableRowElement {
    const who = u.name || u.email || u.id;
    const tier = h("input", { type: "text", value: u.tier, class: "admin-tier", "aria-label": `Tier of ${who}` });
    tier.addEventListener("change", () => void this.change(u, { tier: tier.value.trim() }, () => (tier.value = u.tier)));
    const disabled = h("input", { type: "checkbox", class: "admin-disabled", "aria-label": `${who} is disabled` });
    disabled.checked = u.disabled;
    disabled.addEventListener("change", () =>
      void this.change(u, { disabled: disabled.checked }, () => (disabled.checked = u.disabled)),
    );
    const m = u.usage_this_month;
    return h(
      "tr",
      { "data-id": u.id },
      h("th", { scope: "row", text: who }),
      h("td", { text: u.role }),
      h("td", {}, tier),
      h("td", {}, disabled),
      h("td", { text: whole.format(m.turns) }),
      h("td", { text: whole.format(m.prompt_tokens + m.completion_tokens) }),
      h("td", { text: m.cost_usd === null ? "unknown" : formatCost(m.cost_usd) }),
    );
  }

  /** Sends a change; on refusal says why and puts the field back. */
  private async change(u: AdminUser, change: { tier?: string; disabled?: boolean }, undo: () => void): Promise<void> {
    this.error("");
    try {
      const changed = await this.api.changeUser(u.id, change);
      Object.assign(u, changed);
    } catch (e) {
      undo();
      this.error(describeError(toApiError(e)));
    }
  }

  private chart(id: string, usage: AdminUsage): uPlot {
    const el = $(id);
    const { labels, tokens } = barsOf(usage);
    el.dataset.bars = labels.join(",");
    return new uPlot(
      {
        width: Math.max(280, Math.min(640, el.clientWidth || 560)),
        height: 180,
        legend: { show: false },
        scales: { x: { time: false, range: [-0.5, Math.max(0.5, labels.length - 0.5)] } },
        axes: [{ values: (_u, splits) => splits.map((s) => labels[s] ?? ""), incrs: [1] }, { size: 60 }],
        series: [
          {},
          {
            label: "Tokens",
            stroke: "#0ea5e9",
            fill: "rgba(14, 165, 233, 0.35)",
            paths: uPlot.paths.bars!({ size: [0.6, 60] }),
            points: { show: false },
          },
        ],
      },
      [labels.map((_, i) => i), tokens],
      el,
    );
  }
}
