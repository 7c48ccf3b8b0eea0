// The "Sync details" side panel (non-modal, slides in from the right) and its errors modal.

import { clear, emailText, focusable, h } from "./dom.js";
import { badge, progressBar, runStateBadge, statusBadge } from "./components.js";
import {
  formatDateTime,
  formatDateTimeLong,
  formatDuration,
  formatItems,
  formatNumber,
  kindLabel,
  plural,
  serviceLabel,
} from "./format.js";
import { REQUEST_SYNC_MUTATION, USER_DETAIL_QUERY, USER_FAILURES_QUERY, USER_RUNS_QUERY } from "./queries.js";

const HISTORY_PAGE = 10;
const COMPLETED = new Set(["SUCCEEDED", "COMPLETED_WITH_WARNING"]);

const ALERT_ICON = () => {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 20 20");
  svg.setAttribute("class", "alert-icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M10 2a8 8 0 1 0 0 16 8 8 0 0 0 0-16zm-.9 4h1.8v5.2H9.1V6zm0 6.6h1.8v1.8H9.1v-1.8z");
  svg.append(path);
  return svg;
};

export function failuresText(n) {
  return `${n} sync ${n === 1 ? "failure" : "failures"} detected`;
}

/**
 * @param {object} o
 * @param {{request: Function}} o.client
 * @param {(userId: string|null) => void} o.onUserChange  the panel's user changed (resubscribe)
 * @param {(userId: string) => void} o.onClose  the panel closed (focus goes back to the row)
 * @param {(error: Error) => boolean} o.onError  returns true when the error was handled globally
 * @param {() => boolean} [o.canRequestSync]  whether this token may "Sync now" (OPERATOR, ADMIN)
 */
export function createPanel({
  panel, body, closeButton, heading, modal, client, onUserChange, onClose, onError, canRequestSync = () => false,
}) {
  let userId = null;
  let detail = null; // { user, failedItems, runs }
  let loadError = null;
  let requestSeq = 0;
  let refetchTimer = null;
  let refetching = false;
  let refetchAgain = false;
  let tick = null;
  let syncNote = null; // { userId, text, error } after "Sync now"

  closeButton.addEventListener("click", () => close());

  // ---- open / close -------------------------------------------------------------------------

  function open(id, rowUser = null) {
    const switching = id !== userId;
    userId = id;
    if (switching) {
      syncNote = null;
      detail = rowUser ? { user: rowUser, failedItems: null, runs: null } : null;
      loadError = null;
      closeModal({ restoreFocus: false });
      render();
      body.scrollTop = 0;
      onUserChange(id);
      load();
    }
    panel.classList.add("open");
    panel.removeAttribute("inert");
    document.body.classList.add("panel-open");
    startTick();
    heading.focus({ preventScroll: true });
  }

  function close() {
    if (!userId) return;
    const closedId = userId;
    closeModal({ restoreFocus: false });
    userId = null;
    detail = null;
    requestSeq += 1;
    clearTimeout(refetchTimer);
    stopTick();
    panel.classList.remove("open");
    panel.setAttribute("inert", "");
    document.body.classList.remove("panel-open");
    onUserChange(null);
    onClose(closedId);
  }

  // ---- data ---------------------------------------------------------------------------------

  /** Resolves false when the details could not be read. */
  async function load() {
    const seq = ++requestSeq;
    const id = userId;
    const runsFirst = Math.min(100, Math.max(HISTORY_PAGE, detail?.runs?.list.length ?? 0));
    try {
      const data = await client.request(USER_DETAIL_QUERY, { id, runsFirst });
      if (seq !== requestSeq || id !== userId) return;
      const user = data.syncUser;
      if (!user) {
        detail = null;
        loadError = "This user no longer exists, or is not visible with this token.";
      } else {
        loadError = null;
        // Keep a newer live state than the one this response carries.
        const shown = detail?.user;
        const base = shown && shown.version > user.version ? { ...user, ...shown } : user;
        detail = {
          user: base,
          failedItems: user.lastFinishedRun
            ? {
              runId: user.lastFinishedRun.id,
              totalCount: user.lastFinishedRun.failedItems?.totalCount ?? 0,
              items: (user.lastFinishedRun.failedItems?.edges ?? []).map((e) => e.node),
            }
            : null,
          runs: {
            list: user.runs.edges.map((e) => e.node),
            totalCount: user.runs.totalCount,
            hasNextPage: user.runs.pageInfo.hasNextPage,
            endCursor: user.runs.pageInfo.endCursor,
          },
        };
      }
      render();
      return true;
    } catch (error) {
      if (seq !== requestSeq || id !== userId) return;
      if (onError(error)) return false;
      loadError = error.message;
      render();
      return false;
    }
  }

  /** Resolves false when the details could not be read (true when no panel is open). */
  async function refetch() {
    if (!userId) return true;
    if (refetching) {
      refetchAgain = true;
      return;
    }
    refetching = true;
    try {
      return await load();
    } finally {
      refetching = false;
      if (refetchAgain) {
        refetchAgain = false;
        scheduleRefetch();
      }
    }
  }

  function scheduleRefetch(delay = 250) {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(refetch, delay);
  }

  async function loadMoreRuns(button) {
    const id = userId;
    const runs = detail?.runs;
    if (!runs?.hasNextPage) return;
    button.disabled = true;
    button.textContent = "Loading…";
    try {
      const data = await client.request(USER_RUNS_QUERY, { id, first: HISTORY_PAGE * 2, after: runs.endCursor });
      if (id !== userId || !detail || !data.syncUser) return;
      const known = new Set(runs.list.map((r) => r.id));
      const more = data.syncUser.runs.edges.map((e) => e.node).filter((r) => !known.has(r.id));
      detail.runs = {
        list: [...runs.list, ...more],
        totalCount: data.syncUser.runs.totalCount,
        hasNextPage: data.syncUser.runs.pageInfo.hasNextPage,
        endCursor: data.syncUser.runs.pageInfo.endCursor,
      };
      render({ focusKey: "load-more-runs" });
    } catch (error) {
      if (!onError(error)) {
        button.disabled = false;
        button.textContent = "Load more (failed, try again)";
      }
    }
  }

  /** A live event for the panel's user; applied only when newer than what is shown. */
  function applyUpdate(user) {
    if (!userId || user.id !== userId || !detail) return false;
    const shown = detail.user;
    if (!(user.version > shown.version)) return false;
    const runsChanged =
      (user.currentRun?.id ?? null) !== (shown.currentRun?.id ?? null) ||
      (user.lastFinishedRun?.id ?? null) !== (shown.lastFinishedRun?.id ?? null);
    detail.user = { ...shown, ...user };
    if (detail.runs && user.currentRun) {
      const i = detail.runs.list.findIndex((r) => r.id === user.currentRun.id);
      if (i >= 0) detail.runs.list[i] = { ...detail.runs.list[i], ...user.currentRun };
    }
    render();
    // History and failed items are not in the event: fetch them when a run started or finished.
    if (runsChanged || !detail.runs) scheduleRefetch();
    return true;
  }

  // ---- rendering ----------------------------------------------------------------------------

  function render({ focusKey } = {}) {
    // Keep focus and scroll position across re-renders caused by live updates.
    const active = document.activeElement;
    const keepKey = focusKey ?? (body.contains(active) ? active?.dataset?.focusKey : null);
    const scroll = body.scrollTop;
    clear(body);
    if (!detail) {
      body.append(
        loadError
          ? h("p", { class: "panel-state error", role: "alert" }, loadError)
          : h("p", { class: "panel-state", role: "status" }, "Loading sync details…"),
      );
      return;
    }
    const user = detail.user;
    const sections = [
      identitySection(user),
      syncNowSection(user),
      failureAlert(user),
      loadError ? h("p", { class: "banner banner-error", role: "alert" }, loadError) : null,
      overviewSection(user),
      activitySection(user),
      attentionSection(user),
      historySection(),
    ];
    body.append(...sections.filter(Boolean));
    body.scrollTop = scroll;
    if (keepKey) body.querySelector(`[data-focus-key="${keepKey}"]`)?.focus();
  }

  function identitySection(user) {
    return h(
      "section",
      { class: "panel-section identity", "aria-label": "Source and destination" },
      h("div", { class: "identity-row" },
        badge("Source", "source"),
        h("span", { class: "identity-email", "data-role": "source-email" }, emailText(user.email))),
      h("div", { class: "identity-row" },
        badge("Destination", "destination"),
        h("span", { class: "identity-email", "data-role": "destination-email" }, emailText(user.destinationEmail ?? "—"))),
    );
  }

  function syncNowSection(user) {
    if (!canRequestSync()) return null;
    const note = syncNote?.userId === user.id ? syncNote : null;
    return h("div", { class: "panel-actions" },
      h("button", {
        type: "button",
        class: "btn btn-secondary btn-small",
        id: "sync-now",
        "data-focus-key": "sync-now",
        onclick: (event) => requestSync(user.id, event.currentTarget),
      }, "Sync now"),
      note ? h("span", { class: `panel-action-note${note.error ? " error-text" : ""}`, role: "status" }, note.text) : null);
  }

  async function requestSync(id, button) {
    button.disabled = true;
    button.textContent = "Requesting…";
    try {
      await client.request(REQUEST_SYNC_MUTATION, { userId: id });
      syncNote = { userId: id, text: "Sync requested: it starts when a worker picks it up.", error: false };
    } catch (error) {
      if (onError(error)) return;
      syncNote = { userId: id, text: `Could not request a sync: ${error.message}`, error: true };
    }
    if (id === userId) render({ focusKey: "sync-now" });
  }

  function failureAlert(user) {
    const n = user.unresolvedFailureCount ?? 0;
    if (n <= 0) return null;
    return h(
      "div",
      { class: "alert alert-danger", role: "alert" },
      h("span", { class: "alert-title" }, ALERT_ICON(), failuresText(n)),
      h("button", {
        type: "button",
        class: "btn btn-danger-outline btn-small",
        id: "view-errors",
        "data-focus-key": "view-errors",
        "aria-haspopup": "dialog",
        onclick: () => openModal(),
      }, "View errors"),
    );
  }

  function kv(label, ...value) {
    return [h("dt", {}, label), h("dd", {}, ...value)];
  }

  function overviewSection(user) {
    const status = [statusBadge(user.status)];
    if (user.status === "IN_PROGRESS" && user.currentRun) {
      status.push(progressBar(user.currentRun, { label: "Sync progress" }));
    }
    const policy = user.policy
      ? [h("span", {}, user.policy.name), user.policy.active ? badge("Active", "active", { dot: true }) : badge("Inactive", "inactive", { dot: true })]
      : [h("span", { class: "no-policy" }, "No policy")];
    return h(
      "section",
      { class: "panel-section", "aria-labelledby": "panel-overview-title" },
      h("h3", { id: "panel-overview-title" }, "Overview"),
      h("dl", { class: "kv" },
        kv("Sync status", ...status),
        kv("Policy", ...policy),
        kv("Latest sync", time(user.latestSyncAt, "Never")),
        kv("Next scheduled sync", time(user.nextScheduledSyncAt, user.policy?.active ? "—" : "Not scheduled (no active policy)")),
      ),
    );
  }

  function time(iso, fallback) {
    if (!iso) return h("span", { class: "muted" }, fallback);
    return h("time", { datetime: iso, title: formatDateTimeLong(iso) }, formatDateTime(iso));
  }

  function durationOf(run) {
    if (run.state === "RUNNING") {
      const seconds = (Date.now() - new Date(run.startedAt).getTime()) / 1000;
      return h("span", { "data-live-duration": run.startedAt }, formatDuration(Math.max(0, seconds)));
    }
    return formatDuration(run.durationSeconds);
  }

  function activitySection(user) {
    const run = user.currentRun || user.lastFinishedRun;
    const content = run
      ? h("dl", { class: "kv" },
        kv("Run", runStateBadge(run.state), h("span", { class: "muted" }, `${kindLabel(run.kind)}, ${formatDateTime(run.startedAt)}`)),
        kv("Service", serviceLabel(run.service)),
        kv("Items processed", formatItems(run.itemsProcessed, run.itemsTotal)),
        run.state === "RUNNING" ? kv("Progress", progressBar(run, { label: "Run progress", large: true })) : null,
        kv("Changes", formatNumber(run.changes)),
        kv("Items failed", formatNumber(run.itemsFailed)),
        kv("Duration", durationOf(run)),
        run.errorCode || run.errorMessage
          ? kv("Error", h("span", {}, run.errorMessage ?? ""), run.errorCode ? badge(run.errorCode, "code") : null)
          : null,
      )
      : h("p", { class: "muted" }, "No sync has run for this user yet.");
    return h(
      "section",
      { class: "panel-section", "aria-labelledby": "panel-activity-title" },
      h("h3", { id: "panel-activity-title" }, "Last sync activity"),
      content,
    );
  }

  function attentionSection(user) {
    const run = user.lastFinishedRun;
    if (!run || run.state !== "COMPLETED_WITH_WARNING") return null;
    const failed = detail.failedItems && detail.failedItems.runId === run.id ? detail.failedItems : null;
    let content;
    if (!failed) {
      content = h("p", { class: "muted" }, "Loading items…");
    } else if (!failed.items.length) {
      content = h("p", { class: "muted" }, `${formatNumber(run.itemsFailed)} items failed; no details were reported.`);
    } else {
      content = [
        h("ul", { class: "item-list" }, failed.items.map((item) => h("li", {},
          h("div", { class: "item-head" },
            h("span", { class: "item-id" }, item.itemId),
            h("span", { class: "item-type" }, item.itemType)),
          h("div", { class: "item-error" }, h("span", {}, item.errorMessage), " ", badge(item.errorCode, "code"))))),
        failed.totalCount > failed.items.length
          ? h("p", { class: "more-note" }, `Showing ${failed.items.length} of ${formatNumber(failed.totalCount)} items.`)
          : null,
      ];
    }
    return h(
      "section",
      { class: "panel-section", "aria-labelledby": "panel-attention-title" },
      h("h3", { id: "panel-attention-title" }, "Items needing attention"),
      content,
    );
  }

  function historySection() {
    const runs = detail.runs;
    let content;
    if (!runs) {
      content = h("p", { class: "muted" }, "Loading sync history…");
    } else if (!runs.list.length) {
      content = h("p", { class: "muted" }, "No sync history yet.");
    } else {
      content = [
        h("ol", { class: "history-list" }, runs.list.map((run) => h("li", { "data-run-id": run.id },
          h("span", { class: "history-when" }, time(run.startedAt, "—")),
          runStateBadge(run.state),
          h("span", { class: "history-meta" },
            [
              kindLabel(run.kind),
              serviceLabel(run.service),
              `${formatItems(run.itemsProcessed, run.itemsTotal)} items`,
              plural(run.changes, "change"),
              run.itemsFailed ? `${formatNumber(run.itemsFailed)} failed` : null,
              run.state === "RUNNING" ? "running" : formatDuration(run.durationSeconds),
            ].filter(Boolean).join(" · ")),
          run.state === "FAILED" && (run.errorMessage || run.errorCode)
            ? h("span", { class: "history-error" }, `${run.errorMessage ?? "Failed"}${run.errorCode ? ` (${run.errorCode})` : ""}`)
            : null))),
        runs.hasNextPage
          ? h("button", {
            type: "button",
            class: "btn btn-secondary btn-small",
            "data-focus-key": "load-more-runs",
            onclick: (event) => loadMoreRuns(event.currentTarget),
          }, "Load more")
          : null,
      ];
    }
    return h(
      "section",
      { class: "panel-section", "aria-labelledby": "panel-history-title" },
      h("h3", { id: "panel-history-title" }, "Sync history", runs ? ` (${formatNumber(runs.totalCount)})` : ""),
      content,
    );
  }

  function startTick() {
    if (tick) return;
    tick = setInterval(() => {
      for (const el of body.querySelectorAll("[data-live-duration]")) {
        const seconds = (Date.now() - new Date(el.dataset.liveDuration).getTime()) / 1000;
        el.textContent = formatDuration(Math.max(0, seconds));
      }
    }, 1000);
  }

  function stopTick() {
    clearInterval(tick);
    tick = null;
  }

  // ---- errors modal -------------------------------------------------------------------------

  const modalBody = modal.querySelector("#errors-body");
  let modalSeq = 0;

  modal.querySelector("#errors-close").addEventListener("click", () => closeModal());
  modal.querySelector("#errors-done").addEventListener("click", () => closeModal());
  modal.addEventListener("cancel", (event) => {
    event.preventDefault(); // Esc is handled by the page (modal first, then the panel)
    closeModal();
  });
  modal.addEventListener("click", (event) => {
    if (event.target === modal) closeModal(); // a click on the backdrop
  });
  modal.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const items = focusable(modal);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !modal.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !modal.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });

  async function openModal() {
    if (!userId) return;
    const id = userId;
    const seq = ++modalSeq;
    clear(modalBody).append(h("p", { class: "muted", role: "status" }, "Loading errors…"));
    if (!modal.open) modal.showModal();
    modal.querySelector("#errors-close").focus();
    try {
      const failures = await loadFailures(id);
      if (seq !== modalSeq || !modal.open) return;
      renderFailures(failures);
    } catch (error) {
      if (seq !== modalSeq) return;
      if (onError(error)) {
        closeModal({ restoreFocus: false });
        return;
      }
      clear(modalBody).append(h("p", { class: "error-text", role: "alert" }, `Could not load the errors: ${error.message}`));
    }
  }

  /** The FAILED runs since the last completed run, newest first, with their failed items. */
  async function loadFailures(id) {
    const expected = detail?.user?.unresolvedFailureCount ?? 0;
    const failed = [];
    let after = null;
    for (let page = 0; page < 10; page += 1) {
      const data = await client.request(USER_FAILURES_QUERY, {
        id,
        first: Math.min(100, Math.max(10, expected + 2)),
        after,
      });
      const user = data.syncUser;
      if (!user) return failed;
      for (const { node: run } of user.runs.edges) {
        if (COMPLETED.has(run.state)) return failed;
        if (run.state === "FAILED") failed.push(run);
      }
      if (!user.runs.pageInfo.hasNextPage) return failed;
      after = user.runs.pageInfo.endCursor;
    }
    return failed;
  }

  function renderFailures(runs) {
    clear(modalBody);
    if (!runs.length) {
      modalBody.append(h("p", { class: "muted" }, "No unresolved sync failures."));
      return;
    }
    modalBody.append(
      h("p", { class: "muted", style: { marginBottom: "12px" } },
        `${failuresText(runs.length)} since the last completed sync.`),
      h("ul", { class: "error-list" }, runs.map((run) => h("li", { "data-run-id": run.id },
        h("div", { class: "error-head" },
          h("span", { class: "error-message" }, run.errorMessage || "The sync failed without a message."),
          run.errorCode ? badge(run.errorCode, "code") : null),
        h("div", { class: "error-meta" },
          `${formatDateTime(run.startedAt)} · ${kindLabel(run.kind)} · ${serviceLabel(run.service)} · `
          + `${formatItems(run.itemsProcessed, run.itemsTotal)} items`),
        failedItemsList(run.failedItems)))),
    );
  }

  function failedItemsList(connection) {
    const items = connection?.edges?.map((e) => e.node) ?? [];
    if (!items.length) return null;
    return h("ul", { class: "error-items", "aria-label": "Failed items" },
      items.map((item) => h("li", {},
        h("div", {},
          h("div", {}, h("span", { class: "item-type" }, `${item.itemType} `), h("span", { class: "item-id" }, item.itemId)),
          h("div", { class: "item-error" }, item.errorMessage)),
        badge(item.errorCode, "code"))),
      connection.totalCount > items.length
        ? h("li", { class: "more-note" }, `and ${formatNumber(connection.totalCount - items.length)} more`)
        : null);
  }

  function closeModal({ restoreFocus = true } = {}) {
    modalSeq += 1;
    if (!modal.open) return false;
    modal.close();
    if (restoreFocus) (body.querySelector("#view-errors") || heading).focus();
    return true;
  }

  return {
    open,
    close,
    applyUpdate,
    refetch: () => (userId ? scheduleRefetch(0) : undefined),
    closeModal,
    /** Re-render (the role, and with it "Sync now", became known). */
    rerender: () => (userId ? render() : undefined),
    get userId() {
      return userId;
    },
    get isOpen() {
      return userId !== null;
    },
    get modalOpen() {
      return modal.open;
    },
  };
}
