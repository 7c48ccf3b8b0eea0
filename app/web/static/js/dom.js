// Tiny DOM helpers: build elements without innerHTML, so API text is never parsed as markup.

/**
 * h("div", {class: "x", onclick: fn, "aria-label": "y"}, child, "text", [more])
 * Attributes starting with "on" become listeners; null/false attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** Elements that can take keyboard focus inside root, in tab order. */
export function focusable(root) {
  const selector = [
    "a[href]", "button:not([disabled])", "input:not([disabled])", "select:not([disabled])",
    "textarea:not([disabled])", "[tabindex]:not([tabindex='-1'])",
  ].join(",");
  return [...root.querySelectorAll(selector)].filter(
    (el) => !el.closest("[hidden]") && !el.closest("[inert]") && el.getClientRects().length > 0,
  );
}

/** An email address that may wrap before its "@" (and nowhere else) when space is short. */
export function emailText(email) {
  const at = String(email ?? "").indexOf("@");
  if (at <= 0) return document.createTextNode(String(email ?? ""));
  const fragment = document.createDocumentFragment();
  fragment.append(email.slice(0, at), document.createElement("wbr"), email.slice(at));
  return fragment;
}
