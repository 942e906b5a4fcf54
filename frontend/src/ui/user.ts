/** The user menu (name, email, role, API keys, sign out) and the API keys dialog. */

import type { Api } from "../api";
import { describeError, toApiError } from "../errors";
import type { KeyItem, Me } from "../types";
import { $, copyText, h } from "./dom";

function when(iso: string | null): string {
  if (!iso) return "never";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export class UserMenu {
  private readonly root = $("user");
  private readonly button = $("user-btn") as HTMLButtonElement;
  private readonly menu = $("user-menu");

  constructor(
    me: Me,
    private readonly keys: KeysDialog,
    onSignOut: () => void,
    usage?: { open(): Promise<void> },
    admin?: { open(): Promise<void> },
  ) {
    const name = me.name || me.email || me.id;
    $("user-label").textContent = name;
    this.button.setAttribute("aria-label", `Account: ${name}`);
    $("user-name").textContent = name;
    const email = $("user-email");
    email.textContent = me.email && me.email !== name ? me.email : "";
    email.hidden = !email.textContent;
    $("user-role").textContent = me.role;
    $("user-role").dataset.role = me.role;
    this.root.hidden = false;
    this.button.addEventListener("click", () => (this.menu.hidden ? this.open() : this.close()));
    $("open-keys").addEventListener("click", () => {
      this.close();
      void this.keys.open();
    });
    const openAdmin = $("open-admin");
    openAdmin.hidden = !(admin && me.role === "admin");
    openAdmin.addEventListener("click", () => {
      this.close();
      void admin?.open();
    });
    $("open-usage").addEventListener("click", () => {
      this.close();
      void usage?.open();
    });
    $("sign-out").addEventListener("click", () => {
      this.close();
      onSignOut();
    });
    document.addEventListener("click", (e) => {
      if (!this.menu.hidden && !this.root.contains(e.target as Node)) this.close();
    });
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !this.menu.hidden) {
        e.preventDefault();
        e.stopPropagation();
        this.close();
        this.button.focus();
      }
    });
  }

  private open(): void {
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    ($("open-keys") as HTMLButtonElement).focus();
  }

  private close(): void {
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
  }
}

/** Lists, creates (showing the key once) and revokes API keys. */
export class KeysDialog {
  private readonly dialog = $("keys-dialog") as HTMLDialogElement;
  private readonly list = $("key-list") as HTMLUListElement;
  private readonly name = $("key-name") as HTMLInputElement;
  private readonly createBtn = $("key-create") as HTMLButtonElement;
  private readonly fresh = $("key-new");
  private readonly value = $("key-value") as HTMLInputElement;
  private readonly error = $("keys-error");

  constructor(private readonly api: Api) {
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.create();
    });
    $("key-copy").addEventListener("click", () => void this.copy());
    $("keys-close").addEventListener("click", () => this.dialog.close());
    // The key leaves the page when the dialog closes: it is shown once.
    this.dialog.addEventListener("close", () => this.forgetNewKey());
  }

  async open(): Promise<void> {
    this.forgetNewKey();
    this.showError(null);
    this.dialog.showModal();
    this.name.focus();
    await this.reload();
  }

  private showError(message: string | null): void {
    this.error.textContent = message ?? "";
    this.error.hidden = !message;
  }

  private forgetNewKey(): void {
    this.value.value = "";
    this.fresh.hidden = true;
    $("key-new-note").textContent = "";
  }

  private async reload(): Promise<void> {
    try {
      this.render(await this.api.listKeys());
    } catch (e) {
      this.showError(`Couldn't load your keys. ${describeError(toApiError(e))}`);
    }
  }

  private render(keys: KeyItem[]): void {
    $("keys-empty").hidden = keys.length > 0;
    this.list.replaceChildren(
      ...keys.map((k) => {
        const revoke = h("button", { type: "button", class: "btn btn-small btn-danger", text: "Revoke", "aria-label": `Revoke ${k.name}` });
        revoke.addEventListener("click", () => void this.revoke(k, revoke));
        return h(
          "li",
          { class: "key-item", "data-id": k.id },
          h(
            "span",
            { class: "key-body" },
            h("span", { class: "key-name", text: k.name }),
            h("span", { class: "key-meta", text: `Created ${when(k.created_at)} · last used ${when(k.last_used_at)}` }),
          ),
          revoke,
        );
      }),
    );
  }

  private async create(): Promise<void> {
    const name = this.name.value.trim();
    if (!name) {
      this.showError("Give the key a name, so you know later what it is for.");
      return;
    }
    this.createBtn.disabled = true;
    this.showError(null);
    try {
      const created = await this.api.createKey(name);
      this.name.value = "";
      this.value.value = created.key;
      $("key-new-note").textContent = `Your new key “${created.name}”. Copy it now: it will not be shown again.`;
      this.fresh.hidden = false;
      this.value.focus();
      this.value.select();
      await this.reload();
    } catch (e) {
      this.showError(`The key was not created. ${describeError(toApiError(e))}`);
    } finally {
      this.createBtn.disabled = false;
    }
  }

  private async copy(): Promise<void> {
    const button = $("key-copy");
    try {
      await copyText(this.value.value);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    window.setTimeout(() => (button.textContent = "Copy"), 2000);
  }

  private async revoke(key: KeyItem, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await this.api.deleteKey(key.id);
      await this.reload();
    } catch (e) {
      button.disabled = false;
      this.showError(`The key was not revoked. ${describeError(toApiError(e))}`);
    }
  }
}
