// The users table: rows keyed by user id, so live updates patch a row in place
// (focus and selection survive), and the empty / loading / error states.

import { clear, emailText, h } from "./dom.js";
import { statusBadge, progressBar } from "./components.js";
import { formatDateTime, formatDateTimeLong } from "./format.js";

export function createTable({ table, tbody, onOpen }) {
  const rows = new Map(); // id → { user, tr }
  let selectedId = null;

  function openFromEvent(event) {
    const tr = event.target.closest("tr.user-row");
    if (tr && tbody.contains(tr)) onOpen(tr.dataset.id);
  }

  tbody.addEventListener("click", (event) => {
    if (event.target.closest("a, button")) return;
    openFromEvent(event);
  });
  tbody.addEventListener("keydown", (event) => {
    if (!event.target.matches("tr.user-row")) return;
    if (event.key === "Enter" || event.key === " " || event.key === "Spacebar") {
      event.preventDefault();
      openFromEvent(event);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const sibling = event.key === "ArrowDown"
        ? event.target.nextElementSibling
        : event.target.previousElementSibling;
      if (sibling?.matches("tr.user-row")) {
        event.preventDefault();
        sibling.focus();
      }
    }
  });

  function cells(user) {
    const status = h("div", { class: "status-cell" }, statusBadge(user.status));
    if (user.status === "IN_PROGRESS" && user.currentRun) {
      status.append(progressBar(user.currentRun, { label: `Sync progress for ${user.email}` }));
    }
    return [
      h("td", { class: "cell-user" }, emailText(user.email)),
      h(
        "td",
        { class: "cell-date", title: formatDateTimeLong(user.latestSyncAt) || null },
        user.latestSyncAt ? formatDateTime(user.latestSyncAt) : h("span", { class: "muted" }, "Never"),
      ),
      h(
        "td",
        { class: "cell-policy" },
        user.policy ? user.policy.name : h("span", { class: "no-policy" }, "No policy"),
      ),
      h("td", { class: "cell-status", "data-status": user.status }, status),
    ];
  }

  function buildRow(user) {
    const tr = h("tr", {
      class: `user-row${user.id === selectedId ? " selected" : ""}`,
      tabindex: "0",
      "data-id": user.id,
      "data-version": String(user.version),
      "aria-current": user.id === selectedId ? "true" : null,
      title: "Open sync details",
    });
    tr.append(...cells(user));
    return tr;
  }

  function stateRow(content, className = "") {
    return h("tr", { class: `state-row ${className}`.trim() }, h("td", { colspan: "4" }, content));
  }

  return {
    /** Dim the current rows while a page loads; with no rows, say so. */
    setLoading(loading) {
      table.classList.toggle("loading", loading);
      table.setAttribute("aria-busy", loading ? "true" : "false");
      if (loading && rows.size === 0) clear(tbody).append(stateRow("Loading users…"));
    },

    showRows(users) {
      rows.clear();
      const fragment = document.createDocumentFragment();
      for (const user of users) {
        const tr = buildRow(user);
        rows.set(user.id, { user, tr });
        fragment.append(tr);
      }
      clear(tbody).append(fragment);
    },

    showEmpty(message) {
      rows.clear();
      clear(tbody).append(stateRow(message, "empty"));
    },

    showError(message, onRetry) {
      rows.clear();
      const content = [h("span", {}, message)];
      if (onRetry) content.push(h("button", { type: "button", class: "btn btn-secondary btn-small", onclick: onRetry }, "Try again"));
      clear(tbody).append(stateRow(content, "error"));
    },

    /** Apply a live event when it is newer than the row shown. Returns true when applied. */
    applyUpdate(user) {
      const entry = rows.get(user.id);
      if (!entry || !(user.version > entry.user.version)) return false;
      const statusChanged = user.status !== undefined && user.status !== entry.user.status;
      const merged = { ...entry.user, ...user };
      entry.user = merged;
      const hadFocus = document.activeElement === entry.tr;
      entry.tr.replaceChildren(...cells(merged));
      entry.tr.dataset.version = String(merged.version);
      if (hadFocus) entry.tr.focus();
      if (statusChanged) {
        entry.tr.classList.remove("updated");
        void entry.tr.offsetWidth; // restart the highlight animation
        entry.tr.classList.add("updated");
      }
      return true;
    },

    /** A row that live updates took out of the applied filter: dimmed until the next load. */
    markStale(id, stale) {
      const entry = rows.get(id);
      if (!entry) return;
      entry.tr.classList.toggle("stale", stale);
      if (stale) entry.tr.title = "This row no longer matches the filters; Refresh to update the list";
      else entry.tr.title = "Open sync details";
    },

    setSelected(id) {
      selectedId = id;
      for (const [rowId, { tr }] of rows) {
        const on = rowId === id;
        tr.classList.toggle("selected", on);
        if (on) tr.setAttribute("aria-current", "true");
        else tr.removeAttribute("aria-current");
      }
    },

    focusRow(id) {
      const entry = rows.get(id);
      if (!entry) return false;
      entry.tr.focus();
      return true;
    },

    user(id) {
      return rows.get(id)?.user ?? null;
    },

    ids() {
      return [...rows.keys()];
    },

    get size() {
      return rows.size;
    },
  };
}
