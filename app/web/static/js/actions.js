// Actions on the applied filter: Export CSV (any role) and "Retry all N" (OPERATOR and ADMIN,
// after a confirmation that states N).

import { formatNumber } from "./format.js";
import { REQUEST_SYNCS_MUTATION } from "./queries.js";

export const EXPORT_URL = "/export/sync-users.csv";
const CAN_REQUEST = new Set(["OPERATOR", "ADMIN"]);

export function canRequestSyncs(role) {
  return CAN_REQUEST.has(role);
}

/** The applied SyncUserFilter as the export's query parameters (the same names). */
export function exportParams(filter) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filter || {})) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  return params;
}

function fileName(now = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `sync-users-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}.csv`;
}

/**
 * @param {object} o
 * @param {() => object|null} o.filter   the applied filter
 * @param {() => number} o.total         its totalCount as the table shows it
 * @param {() => string} o.getToken
 */
export function createActions({ exportButton, retryButton, note, modal, client, filter, total, getToken, onAuthError, onRequested }) {
  let role = null;
  let bulkSupported = false;
  const confirmText = modal.querySelector("#confirm-text");
  const confirmOk = modal.querySelector("#confirm-ok");
  let pending = null; // { filter, n } the confirmation is about
  let exporting = false;

  function say(text, isError = false) {
    note.hidden = !text;
    note.textContent = text || "";
    note.classList.toggle("error-text", isError);
  }

  // ---- export: fetch with the token in a header, then save the Blob (no token in any URL) ----

  exportButton.addEventListener("click", async () => {
    const params = exportParams(filter());
    const url = `${EXPORT_URL}${params.size ? `?${params}` : ""}`;
    exporting = true;
    exportButton.disabled = true;
    exportButton.textContent = "Exporting…";
    say("");
    try {
      const response = await fetch(url, { headers: { Authorization: `Bearer ${getToken()}`, Accept: "text/csv" } });
      if (response.status === 401) {
        onAuthError();
        return;
      }
      if (response.status === 404) throw new Error("Export is not available on this server yet.");
      if (!response.ok) throw new Error(`The export failed: HTTP ${response.status}.`);
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = fileName();
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    } catch (error) {
      say(error.message || "The export failed.", true);
    } finally {
      exporting = false;
      exportButton.textContent = "Export CSV";
      update();
    }
  });

  // ---- retry all ----------------------------------------------------------------------------

  function update() {
    const n = total();
    // Nothing matches: an export would be a file of headers only.
    exportButton.disabled = exporting || n === 0;
    exportButton.title = n === 0 && !exporting ? "No users match the applied filters" : "";
    const show = bulkSupported && canRequestSyncs(role) && Boolean(filter()) && n > 0;
    retryButton.hidden = !show;
    retryButton.textContent = `Retry all ${formatNumber(n)}`;
  }

  retryButton.addEventListener("click", () => {
    const n = total();
    pending = { filter: filter(), n };
    const users = n === 1 ? "the 1 user" : `all ${formatNumber(n)} users`;
    confirmText.textContent = `Request a sync now for ${users} matching the applied filters? `
      + "Users without an active policy, or with a sync already running, are skipped.";
    confirmOk.textContent = n === 1 ? "Retry 1 user" : `Retry ${formatNumber(n)} users`;
    modal.showModal();
    modal.querySelector("#confirm-cancel").focus();
  });

  modal.querySelector("#confirm-cancel").addEventListener("click", () => {
    pending = null;
    modal.close();
    retryButton.focus();
  });
  modal.addEventListener("close", () => {
    pending = null;
  });

  confirmOk.addEventListener("click", async () => {
    if (!pending) return;
    const { filter: applied } = pending;
    confirmOk.disabled = true;
    try {
      const data = await client.request(REQUEST_SYNCS_MUTATION, { filter: applied });
      const { requested, skipped } = data.requestSyncs;
      say(`Requested ${formatNumber(requested)} ${requested === 1 ? "sync" : "syncs"}; ${formatNumber(skipped)} skipped.`);
      onRequested();
    } catch (error) {
      if (!onAuthError(error)) say(`Could not request the syncs: ${error.message}`, true);
    } finally {
      confirmOk.disabled = false;
      pending = null;
      if (modal.open) modal.close();
      retryButton.focus();
    }
  });

  return {
    setRole(value) {
      role = value;
      update();
    },
    setBulkSupported(value) {
      bulkSupported = value;
      update();
    },
    update,
    clearNote: () => say(""),
    get role() {
      return role;
    },
  };
}
