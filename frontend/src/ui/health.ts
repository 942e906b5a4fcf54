/**
 * Watches `/health`: a banner when the server can't be reached (retrying with backoff, with a
 * live countdown), a notice when it reports itself degraded, and the model name in the header.
 */

import type { Api } from "../api";
import type { Health } from "../types";
import { h } from "./dom";

const OK_INTERVAL_MS = 30_000;
const MAX_BACKOFF_S = 30;

export class HealthMonitor {
  private timer: number | undefined;
  private tick: number | undefined;
  private failures = 0;
  private checking = false;
  reachable = true;

  constructor(
    private readonly api: Api,
    private readonly banner: HTMLElement,
    private readonly modelBadge: HTMLElement,
    private readonly onReachableChange: (reachable: boolean) => void = () => undefined,
  ) {}

  start(): void {
    void this.check();
  }

  /** Checks now (called also when any request fails at the network level). */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    window.clearTimeout(this.timer);
    window.clearInterval(this.tick);
    try {
      const health = await this.api.health();
      this.failures = 0;
      this.setReachable(true);
      this.showHealth(health);
      this.timer = window.setTimeout(() => void this.check(), OK_INTERVAL_MS);
    } catch {
      this.failures++;
      this.setReachable(false);
      const delay = Math.min(MAX_BACKOFF_S, 2 ** (this.failures - 1));
      this.showUnreachable(delay);
      this.timer = window.setTimeout(() => void this.check(), delay * 1000);
    } finally {
      this.checking = false;
    }
  }

  private setReachable(r: boolean): void {
    if (r !== this.reachable) {
      this.reachable = r;
      this.onReachableChange(r);
    }
  }

  private showHealth(health: Health): void {
    if (typeof health.model === "string" && health.model) {
      this.modelBadge.textContent = health.model;
      this.modelBadge.title = `Model: ${health.model}`;
      this.modelBadge.hidden = false;
    } else {
      this.modelBadge.hidden = true;
      this.modelBadge.textContent = "";
    }
    if (health.status && health.status !== "ok") {
      const down = Object.entries(health.checks ?? {})
        .filter(([, v]) => v !== "ok")
        .map(([k]) => k);
      this.banner.className = "banner banner-warn";
      this.banner.replaceChildren(
        h("span", {
          text:
            "Some parts of the service aren't working right now" +
            (down.length ? ` (${down.join(", ")})` : "") +
            ". Things may fail until they recover.",
        }),
      );
      this.banner.hidden = false;
    } else {
      this.banner.hidden = true;
      this.banner.replaceChildren();
    }
  }

  private showUnreachable(delay: number): void {
    let left = delay;
    const text = h("span");
    const retry = h("button", { type: "button", class: "btn btn-small", text: "Retry now" });
    retry.addEventListener("click", () => void this.check());
    const render = () => {
      text.textContent = `Can't reach the server. Retrying in ${left} s…`;
    };
    render();
    this.banner.className = "banner banner-error";
    this.banner.replaceChildren(text, retry);
    this.banner.hidden = false;
    this.tick = window.setInterval(() => {
      left = Math.max(0, left - 1);
      render();
    }, 1000);
  }
}
