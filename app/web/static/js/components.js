// Small pieces shared by the table and the panel: badges and progress bars.

import { h } from "./dom.js";
import { formatNumber, formatPercent, runProgress, runStateLabel, statusLabel } from "./format.js";

export function statusBadge(status) {
  return h("span", { class: `badge badge-${status}`, "data-status": status }, statusLabel(status));
}

export function runStateBadge(state) {
  return h("span", { class: `badge badge-${state}`, "data-state": state }, runStateLabel(state));
}

export function badge(text, variant, { dot = false } = {}) {
  return h("span", { class: `badge badge-${variant}${dot ? "" : " no-dot"}` }, text);
}

/**
 * Progress of a running run: a bar and a percentage, or a moving bar and the item count while the
 * total is unknown.
 */
export function progressBar(run, { label = "Sync progress", large = false } = {}) {
  const fraction = runProgress(run);
  const known = typeof fraction === "number";
  const text = known
    ? formatPercent(fraction)
    : `${formatNumber(run?.itemsProcessed ?? 0)} items`;
  const attrs = {
    class: `progress${known ? "" : " indeterminate"}${large ? " progress-large" : ""}`,
    role: "progressbar",
    "aria-label": label,
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuetext": text,
  };
  if (known) attrs["aria-valuenow"] = String(Math.round(Math.max(0, Math.min(1, fraction)) * 100));
  const width = known ? `${Math.max(0, Math.min(1, fraction)) * 100}%` : "35%";
  const track = h("span", { class: "progress-track" }, h("span", { class: "progress-bar", style: { width } }));
  const caption = h("span", { class: "progress-text" }, text);
  return large ? h("div", attrs, track, caption) : h("span", attrs, track, caption);
}
