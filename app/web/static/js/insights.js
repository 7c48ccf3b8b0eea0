// Under the metric cards: "Top failure reasons" (a click filters the table by that error code)
// and a plain-SVG chart of changes and failed runs over 24 hours or 7 days. Both refresh when
// metrics events arrive, at most once per interval, and stay hidden where the server does not
// serve their fields.

import { clear, h } from "./dom.js";
import { formatNumber } from "./format.js";
import { FAILURE_REASONS_QUERY, TRENDS_QUERY } from "./queries.js";

const SVG = "http://www.w3.org/2000/svg";
const REASONS_SHOWN = 5;
// The Error code field suggests every code failing now (the API's most), not only the five shown.
const REASONS_SUGGESTED = 100;

/** Calls fn at most once per `ms`, the last call winning (trailing). */
function throttled(fn, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

/** A reason's button filters the table by its code; pressed again, it takes that filter off. */
function reasonTitle(code, active) {
  return code === active ? "Show all users again (clear the error code filter)" : `Show the users who failed with ${code}`;
}

export function createFailureReasons({ section, list, empty, suggestions, client, onPick, onError }) {
  let enabled = false;
  let active = null;
  let seq = 0;

  async function load() {
    if (!enabled) return;
    const mine = ++seq;
    try {
      const data = await client.request(FAILURE_REASONS_QUERY, { first: REASONS_SUGGESTED });
      if (mine === seq) show(data.failureReasons);
    } catch (error) {
      if (mine === seq) onError(error);
    }
  }

  // A live refresh must not move a reason under the pointer or the keyboard focus: while the
  // list is held, new counts are written in place, and an answer that re-sorts the list waits
  // until the list is let go. Hover is tracked for mouse and pen only (a finger's :hover sticks
  // after a tap).
  let hovered = false;
  let pending = null;
  // Keyboard focus only (:focus-visible): a clicked button keeps the focus, and the list would
  // stay held long after the pointer left it.
  const held = () => hovered || list.querySelector(":focus-visible") !== null;
  function show(reasons) {
    pending = held() && !updateInPlace(reasons) ? reasons : null;
    if (!pending) render(reasons);
  }
  /** New counts and messages for the same reasons in the same order: nothing moves. */
  function updateInPlace(reasons) {
    const buttons = [...list.querySelectorAll("button.reason")];
    const shown = reasons.slice(0, REASONS_SHOWN);
    if (shown.length !== buttons.length || shown.some((r, i) => r.errorCode !== buttons[i].dataset.code)) {
      return false;
    }
    shown.forEach((reason, i) => fill(buttons[i], reason));
    renderSuggestions(reasons);
    return true;
  }
  function renderSuggestions(reasons) {
    clear(suggestions);
    for (const reason of reasons) {
      suggestions.append(h("option", { value: reason.errorCode, label: reason.sampleMessage || "" }));
    }
  }
  function release() {
    if (pending && !held()) show(pending);
  }
  list.addEventListener("pointerenter", (event) => {
    hovered = event.pointerType !== "touch";
  });
  list.addEventListener("pointerleave", () => {
    hovered = false;
    release();
  });
  list.addEventListener("focusout", (event) => {
    if (!list.contains(event.relatedTarget)) setTimeout(release);
  });

  function render(reasons) {
    clear(list);
    renderSuggestions(reasons);
    empty.hidden = reasons.length > 0;
    for (const reason of reasons.slice(0, REASONS_SHOWN)) {
      list.append(h("li", {},
        h("button", {
          type: "button",
          class: "reason",
          "data-code": reason.errorCode,
          "aria-pressed": String(reason.errorCode === active),
          title: reasonTitle(reason.errorCode, active),
          onclick: () => onPick(reason.errorCode),
        },
        h("span", { class: "badge badge-code no-dot reason-code" }, reason.errorCode),
        h("span", { class: "reason-message" }),
        h("span", { class: "reason-count" }))));
      fill(list.lastElementChild.firstElementChild, reason);
    }
  }
  /** A reason's message and count, on a new button or in place. */
  function fill(button, reason) {
    const message = button.querySelector(".reason-message");
    message.textContent = message.title = reason.sampleMessage;
    const count = button.querySelector(".reason-count");
    count.textContent = formatNumber(reason.userCount);
    count.setAttribute("aria-label", `${formatNumber(reason.userCount)} users`);
  }

  return {
    enable() {
      enabled = true;
      section.hidden = false;
      load();
    },
    load,
    refreshSoon: throttled(load, 2000),
    /** The error code applied to the table now (highlighted), or null. */
    setActive(code) {
      active = code || null;
      for (const button of list.querySelectorAll("button.reason")) {
        button.setAttribute("aria-pressed", String(button.dataset.code === active));
        button.title = reasonTitle(button.dataset.code, active);
      }
    },
  };
}

// ---- trends chart -------------------------------------------------------------------------------

const PERIODS = {
  day: { bucket: "HOUR" },
  week: { bucket: "DAY" },
};
const hourFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric" });

function windowStart(period, now = new Date()) {
  if (period === "day") {
    const hour = new Date(now);
    hour.setUTCMinutes(0, 0, 0);
    return new Date(hour.getTime() - 23 * 3600 * 1000);
  }
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 6));
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

export function createTrends({ section, chart, legend, buttons, client, onError }) {
  let enabled = false;
  let period = "day";
  let seq = 0;

  for (const button of buttons) {
    button.addEventListener("click", () => {
      period = button.dataset.period;
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      load();
    });
  }

  async function load() {
    if (!enabled) return;
    const mine = ++seq;
    const { bucket } = PERIODS[period];
    try {
      const data = await client.request(TRENDS_QUERY, { since: windowStart(period).toISOString(), bucket });
      if (mine === seq) render(data.syncTrends);
    } catch (error) {
      if (mine === seq) onError(error);
    }
  }

  function label(point) {
    const at = new Date(point.at);
    return period === "day" ? hourFormat.format(at) : dayFormat.format(at);
  }

  // 24 hours of buckets start on the previous day most of the day: "since 4:00 PM" read at
  // 9 AM would be an hour still to come.
  function sinceLabel(point) {
    const at = new Date(point.at);
    const yesterday = period === "day" && at.toDateString() !== new Date().toDateString();
    return yesterday ? `yesterday ${label(point)}` : label(point);
  }

  function render(points) {
    const changes = points.map((p) => Number(p.changes) || 0);
    const failed = points.map((p) => p.runsFailed || 0);
    const totalChanges = changes.reduce((a, b) => a + b, 0);
    const totalFailed = failed.reduce((a, b) => a + b, 0);
    const maxChanges = Math.max(1, ...changes);
    const maxFailed = Math.max(1, ...failed);
    // Whole buckets since the first one's start: a little less than the rolling 24 hours of
    // the "Changes (Last 24h)" card beside it, so the legend says where its totals begin.
    const since = points.length ? `since ${sinceLabel(points[0])}` : "";
    const n = Math.max(1, points.length);
    const width = n * 10;
    const height = 100;

    const bars = points.map((point, i) => {
      const barHeight = (changes[i] / maxChanges) * (height - 4);
      return svg("rect", {
        class: "bar-changes",
        x: i * 10 + 1,
        y: height - barHeight,
        width: 8,
        height: Math.max(barHeight, changes[i] ? 1 : 0),
      }, svg("title", {}, `${label(point)}: ${formatNumber(changes[i])} changes, ${formatNumber(failed[i])} failed runs`));
    });
    const line = points.map((_, i) => `${i * 10 + 5},${height - (failed[i] / maxFailed) * (height - 6) - 3}`);
    const graphic = svg("svg", {
      class: "chart-svg",
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `${formatNumber(totalChanges)} changes and ${formatNumber(totalFailed)} failed runs ${since}`,
    },
    svg("line", { class: "chart-base", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, "vector-effect": "non-scaling-stroke" }),
    ...bars,
    svg("polyline", { class: "line-failed", points: line.join(" "), "vector-effect": "non-scaling-stroke" }));

    clear(legend).append(
      h("span", { class: "legend-changes" }, h("span", { class: "swatch", "aria-hidden": "true" }), `Changes ${formatNumber(totalChanges)}`),
      h("span", { class: "legend-failed" }, h("span", { class: "swatch", "aria-hidden": "true" }), `Failed runs ${formatNumber(totalFailed)}`),
      h("span", { class: "legend-window" }, since),
    );
    clear(chart).append(
      h("div", { class: "chart-scale", "aria-hidden": "true" },
        h("span", {}, `max ${formatNumber(Math.max(...changes, 0))} changes`),
        h("span", { class: "chart-scale-failed" }, `max ${formatNumber(Math.max(...failed, 0))} failed`)),
      graphic,
      h("div", { class: "chart-axis", "aria-hidden": "true" },
        h("span", {}, points.length ? label(points[0]) : ""),
        h("span", {}, period === "day" ? "now" : "today")),
    );
    chart.dataset.points = String(points.length);
  }

  return {
    enable() {
      enabled = true;
      section.hidden = false;
      load();
    },
    load,
    refreshSoon: throttled(load, 5000),
  };
}
