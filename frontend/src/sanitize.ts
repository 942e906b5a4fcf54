/**
 * The one gate between model output and the DOM. Only plain HTML survives (no SVG or MathML,
 * no scripts, no event handlers, no styles, no forms or frames); links may point only to
 * http(s), mailto or relative targets and always open in a new tab with `noopener noreferrer`.
 */

import DOMPurify from "dompurify";

const purify = DOMPurify(window);

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

/** True for URLs that may be followed: http(s), mailto, and relative or fragment URLs. */
export function isSafeUrl(url: string, attr: "href" | "src" = "href"): boolean {
  // Browsers ignore control characters and whitespace inside a scheme: strip them like they do.
  const compact = url.replace(/[\u0000-\u0020\u007f-\u009f]+/g, "");
  if (attr === "src" && /^data:image\/(png|jpe?g|gif|webp);/i.test(compact)) return true;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(compact);
  if (!scheme) return true; // relative
  return SAFE_PROTOCOLS.has(scheme[1]!.toLowerCase() + ":");
}

purify.addHook("afterSanitizeAttributes", (node) => {
  const el = node as Element;
  if (!el.getAttribute) return;
  for (const attr of ["href", "src", "xlink:href", "action", "formaction", "poster", "background"] as const) {
    const v = el.getAttribute(attr);
    if (v != null && !isSafeUrl(v, attr === "src" ? "src" : "href")) el.removeAttribute(attr);
  }
  if (el.tagName === "A") {
    if (el.hasAttribute("href")) {
      el.setAttribute("target", "_blank");
      el.setAttribute("rel", "noopener noreferrer");
    } else {
      el.removeAttribute("target");
    }
  }
  if (el.tagName === "IMG") {
    el.setAttribute("loading", "lazy");
    el.setAttribute("referrerpolicy", "no-referrer");
  }
});

const CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    "style", "form", "input", "button", "textarea", "select", "option", "iframe", "frame",
    "frameset", "object", "embed", "link", "meta", "base", "dialog", "template", "audio", "video", "source",
  ],
  FORBID_ATTR: ["style", "autofocus", "formaction", "srcset", "ping", "target"],
  SANITIZE_NAMED_PROPS: true,
  ALLOW_UNKNOWN_PROTOCOLS: false,
};

/** Sanitized HTML as a string. */
export function sanitizeHtml(html: string): string {
  return purify.sanitize(html, CONFIG) as unknown as string;
}

/** Sanitized HTML as a fragment ready to insert. */
export function sanitizeToFragment(html: string): DocumentFragment {
  return purify.sanitize(html, { ...CONFIG, RETURN_DOM_FRAGMENT: true }) as unknown as DocumentFragment;
}
