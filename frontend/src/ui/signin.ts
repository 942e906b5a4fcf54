/**
 * The sign-in screen, for the mode the server reports: email and password (with "create the admin
 * account" on first run, and "create an account" when registration is open), the identity
 * provider's sign-in button, or a pasted token.
 */

import { LocalAuth, OidcAuth, PastedToken, SignInError } from "../auth";
import type { AuthConfig } from "../types";
import { h, icon } from "./dom";

/** Shown once on the next sign-in screen (why the last sign-in ended). */
export const NOTICE_KEY = "conversa.signin.notice";

type Form = "signin" | "register" | "first";

function field(id: string, label: string, attrs: Record<string, string | number | boolean>): HTMLElement {
  return h("div", { class: "field" }, h("label", { for: id, text: label }), h("input", { id, ...attrs }));
}

function value(root: HTMLElement, id: string): string {
  return (root.querySelector(`#${id}`) as HTMLInputElement | null)?.value ?? "";
}

export class SignInScreen {
  constructor(
    private readonly root: HTMLElement,
    private readonly app: HTMLElement,
  ) {}

  /** Shows the screen. */
  private open(): void {
    this.app.hidden = true;
    this.root.hidden = false;
  }

  /** Hides it, showing the app (hidden in the page until the sign-in is settled). */
  close(): void {
    this.root.hidden = true;
    this.root.replaceChildren();
    this.app.hidden = false;
  }

  private card(title: string, ...children: (Node | null)[]): HTMLElement {
    let notice: string | null = null;
    try {
      notice = sessionStorage.getItem(NOTICE_KEY);
      sessionStorage.removeItem(NOTICE_KEY);
    } catch {
      // no storage: no notice
    }
    const card = h(
      "div",
      { class: "signin-card" },
      h("p", { class: "brand signin-brand" }, icon("spark"), "Conversa"),
      h("h1", { id: "signin-title", class: "signin-title", text: title }),
      h("p", { id: "signin-error", class: "signin-error", role: "alert", hidden: !notice, text: notice ?? "" }),
      ...children,
    );
    this.root.setAttribute("aria-labelledby", "signin-title");
    this.root.replaceChildren(card);
    this.open();
    return card;
  }

  private showError(message: string): void {
    const el = this.root.querySelector("#signin-error") as HTMLElement | null;
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
  }

  /** Email and password (mode `local`); resolves when signed in. */
  local(auth: LocalAuth, config: AuthConfig): Promise<void> {
    return new Promise((resolve) => {
      const render = (form: Form) => {
        const first = form === "first";
        const register = form === "register" || first;
        const title = first ? "Create the admin account" : register ? "Create an account" : "Sign in";
        const submit = h("button", {
          type: "submit",
          class: "btn btn-primary signin-submit",
          text: register ? "Create account" : "Sign in",
        });
        const formEl = h(
          "form",
          { class: "signin-form", novalidate: true },
          first
            ? h("p", {
                class: "signin-hint",
                text: "No account exists yet. The first account manages this server: it adds people and sees usage.",
              })
            : null,
          register ? field("signin-name", "Name (optional)", { type: "text", autocomplete: "name", maxlength: 100 }) : null,
          field("signin-email", "Email", { type: "email", autocomplete: "username", required: true }),
          field("signin-password", "Password", {
            type: "password",
            autocomplete: register ? "new-password" : "current-password",
            required: true,
            ...(register ? { minlength: 10, "aria-describedby": "signin-password-hint" } : {}),
          }),
          register ? h("p", { id: "signin-password-hint", class: "signin-hint", text: "At least 10 characters." }) : null,
          submit,
        );
        const other =
          first || config.registration !== "open"
            ? null
            : h("button", {
                type: "button",
                class: "btn-link signin-switch",
                text: register ? "I have an account: sign in" : "Create an account",
              });
        other?.addEventListener("click", () => render(register ? "signin" : "register"));
        this.card(title, formEl, other);
        formEl.addEventListener("submit", (e) => {
          e.preventDefault();
          const email = value(this.root, "signin-email").trim();
          const password = value(this.root, "signin-password");
          if (!email || !password) {
            this.showError("Enter your email and password.");
            return;
          }
          if (register && password.length < 10) {
            this.showError("The password is too short: at least 10 characters.");
            return;
          }
          submit.disabled = true;
          const attempt = register
            ? auth.register(email, password, value(this.root, "signin-name").trim() || undefined)
            : auth.login(email, password);
          attempt.then(
            () => resolve(),
            (err: unknown) => {
              submit.disabled = false;
              this.showError(err instanceof SignInError ? err.message : "The server could not be reached. Please try again.");
              (this.root.querySelector("#signin-password") as HTMLInputElement | null)?.focus();
            },
          );
        });
        (this.root.querySelector(first || register ? "#signin-name" : "#signin-email") as HTMLInputElement | null)?.focus();
      };
      render(config.first_account ? "first" : "signin");
    });
  }

  /** The identity provider's sign-in (mode `oidc`): a button that goes there. */
  oidc(auth: OidcAuth, error?: string): void {
    const button = h("button", { type: "button", class: "btn btn-primary signin-submit", text: "Sign in" });
    button.addEventListener("click", () => {
      button.disabled = true;
      void auth.begin();
    });
    this.card(
      "Sign in",
      h("p", { class: "signin-hint", text: "You sign in with your organisation's account, on its own sign-in page." }),
      button,
    );
    if (error) this.showError(error);
    button.focus();
  }

  /** A pasted token (mode `tokens`); resolves when one is given (the server checks it). */
  token(auth: PastedToken): Promise<void> {
    return new Promise((resolve) => {
      const formEl = h(
        "form",
        { class: "signin-form" },
        field("signin-token", "Access token or API key", { type: "password", autocomplete: "off", required: true }),
        h("button", { type: "submit", class: "btn btn-primary signin-submit", text: "Sign in" }),
      );
      this.card("Sign in", formEl);
      formEl.addEventListener("submit", (e) => {
        e.preventDefault();
        const token = value(this.root, "signin-token").trim();
        if (!token) return this.showError("Paste your token.");
        auth.set(token);
        resolve();
      });
      (this.root.querySelector("#signin-token") as HTMLInputElement | null)?.focus();
    });
  }

  /** A message while something happens (a redirect back being completed). */
  busy(message: string): void {
    this.card("Signing in", h("p", { class: "signin-hint", role: "status", text: message }));
  }
}
