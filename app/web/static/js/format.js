// Formatting in the viewer's locale and time zone, and status labels.

export const STATUS_LABELS = Object.freeze({
  NEVER_SYNCED: "Never Synced",
  IN_PROGRESS: "In Progress",
  SYNCED: "Synced",
  COMPLETED_WITH_WARNING: "Completed with Warning",
  FAILED: "Failed",
});

export const RUN_STATE_LABELS = Object.freeze({
  RUNNING: "Running",
  SUCCEEDED: "Succeeded",
  COMPLETED_WITH_WARNING: "Completed with Warning",
  FAILED: "Failed",
});

const SERVICE_LABELS = { MAIL: "Mail", CALENDAR: "Calendar", CONTACTS: "Contacts", DRIVE: "Drive" };
const KIND_LABELS = { INITIAL: "Initial sync", DELTA: "Delta sync" };

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateTimeLongFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "long", day: "numeric",
  hour: "numeric", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});
const numberFormat = new Intl.NumberFormat();
const percentFormat = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 0 });

export function statusLabel(status) {
  return STATUS_LABELS[status] ?? status;
}

export function runStateLabel(state) {
  return RUN_STATE_LABELS[state] ?? state;
}

export function serviceLabel(service) {
  return SERVICE_LABELS[service] ?? service;
}

export function kindLabel(kind) {
  return KIND_LABELS[kind] ?? kind;
}

/** An API DateTime (ISO 8601) in local time, or the fallback when absent. */
export function formatDateTime(iso, fallback = "—") {
  if (!iso) return fallback;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return fallback;
  return dateTimeFormat.format(date);
}

/** Full local time with zone, for title tooltips. */
export function formatDateTimeLong(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : dateTimeLongFormat.format(date);
}

export function formatNumber(n, fallback = "—") {
  return typeof n === "number" && Number.isFinite(n) ? numberFormat.format(n) : fallback;
}

export function formatPercent(fraction) {
  return percentFormat.format(Math.max(0, Math.min(1, fraction)));
}

export function formatDuration(seconds, fallback = "—") {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return fallback;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs}h ${m % 60}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

/** "1 change", "3 changes" (with the number formatted). */
export function plural(n, one, many = `${one}s`) {
  return `${formatNumber(n)} ${n === 1 ? one : many}`;
}

/** "1,234 of 2,000" or "1,234 of unknown total". */
export function formatItems(processed, total) {
  const p = formatNumber(processed ?? 0);
  return total === null || total === undefined ? `${p} (total not known yet)` : `${p} of ${formatNumber(total)}`;
}

/** Progress of a run as a fraction in 0..1, or null while the total is unknown. */
export function runProgress(run) {
  if (!run) return null;
  if (typeof run.progress === "number") return run.progress;
  if (run.itemsTotal) return (run.itemsProcessed ?? 0) / run.itemsTotal;
  return null;
}

function pad(n, width = 2) {
  return String(Math.abs(Math.trunc(n))).padStart(width, "0");
}

/** A local Date as ISO 8601 with the local offset, e.g. 2024-05-01T00:00:00.000+02:00. */
export function toLocalISOString(date) {
  const offsetMin = -date.getTimezoneOffset();
  const sign = offsetMin >= 0 ? "+" : "-";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}` +
    `${sign}${pad(offsetMin / 60)}:${pad(offsetMin % 60)}`
  );
}

function parseDateInput(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  return match ? [Number(match[1]), Number(match[2]) - 1, Number(match[3])] : null;
}

/** <input type=date> value → start of that local day (00:00:00.000) as ISO with offset. */
export function localDayStart(value) {
  const parts = parseDateInput(value);
  return parts ? toLocalISOString(new Date(parts[0], parts[1], parts[2], 0, 0, 0, 0)) : null;
}

/** <input type=date> value → end of that local day (23:59:59.999) as ISO with offset. */
export function localDayEnd(value) {
  const parts = parseDateInput(value);
  return parts ? toLocalISOString(new Date(parts[0], parts[1], parts[2], 23, 59, 59, 999)) : null;
}

/**
 * "1-10 of 250 results", "11 of 11 results" (a page of one row), "1 of 1 result" (offset is
 * 0-based; plain digits so the text stays easy to read aloud and parse); with nothing to show,
 * "No users match" (or "No users yet" without a filter).
 */
export function formatRange(offset, count, total, { filtered = true } = {}) {
  if (!total || !count) return filtered ? "No users match" : "No users yet";
  const rows = count === 1 ? `${offset + 1}` : `${offset + 1}-${offset + count}`;
  return `${rows} of ${total} ${total === 1 ? "result" : "results"}`;
}
