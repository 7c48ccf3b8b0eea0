// The Sync Status page: wires the token, the GraphQL client, the live connection, the metric
// cards, the filters, the table with its cursor pagination, and the detail panel.

import { $ } from "./dom.js";
import { ApiError, createClient } from "./graphql.js";
import { createWsClient, defaultWsUrl } from "./ws.js";
import { createFilters, matchesFilter } from "./filters.js";
import { createTable } from "./table.js";
import { createPanel } from "./panel.js";
import { formatNumber, formatRange } from "./format.js";
import { createFailureReasons, createTrends } from "./insights.js";
import { canRequestSyncs, createActions } from "./actions.js";
import {
  CAPABILITIES_QUERY,
  VIEWER_QUERY,
  METRICS_QUERY,
  METRICS_SUBSCRIPTION,
  POLICIES_QUERY,
  USERS_QUERY,
  USER_UPDATED_SUBSCRIPTION,
} from "./queries.js";

const TOKEN_KEY = "syncstatus.token";
const MAX_IDS_PER_SUBSCRIPTION = 100;
const ROLE_LABELS = { VIEWER: "Viewer", OPERATOR: "Operator", WORKER: "Worker", ADMIN: "Admin" };
const METRIC_NAMES = ["usersWithActivePolicy", "changesLast24h", "syncsInProgress", "failedSyncs"];
const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  closed: "Not connected",
};

// ---- token ------------------------------------------------------------------------------------

function takeTokenFromUrl() {
  if (!location.hash) return;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token === null) return;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
}

const getToken = () => sessionStorage.getItem(TOKEN_KEY) || "";

// ---- page state -------------------------------------------------------------------------------

const state = {
  started: false,
  filter: null,
  pageSize: 10,
  args: { first: 10 }, // cursor arguments of the page shown
  offset: 0, // 0-based position of the first row shown
  pageInfo: null,
  totalCount: 0,
  rowCount: 0,
  loadSeq: 0,
  metricsAsOf: null,
  rowSubs: { key: "", unsubscribe: [] },
  stale: new Set(), // ids of rows shown that live updates took out of the applied filter
  resyncing: false, // subscribing again after the server cut a subscription off (CONFLICT)
  metricsUnsubscribe: null,
  role: null, // from `viewer`, where served
  catchUp: { seq: 0, timer: null, delay: 0 }, // refetching after a reconnect
};

const el = {
  main: $("#main"),
  gate: $("#token-gate"),
  gateMessage: $("#token-gate-message"),
  tokenForm: $("#token-form"),
  tokenInput: $("#token-input"),
  changeToken: $("#change-token"),
  connection: $("#connection"),
  connectionText: $("#connection-text"),
  pageError: $("#page-error"),
  resultCount: $("#result-count"),
  pageSize: $("#page-size"),
  prev: $("#prev-page"),
  next: $("#next-page"),
  staleNote: $("#stale-note"),
  staleText: $("#stale-text"),
  reconnecting: $("#reconnecting"),
  panel: $("#panel"),
};

const client = createClient({ url: "/graphql", getToken });

const ws = createWsClient({
  url: defaultWsUrl("/graphql"),
  connectionParams: () => ({ authorization: `Bearer ${getToken()}` }),
  onStatus: (status) => {
    el.connection.dataset.state = status;
    el.connectionText.textContent = CONNECTION_TEXT[status] ?? status;
    if (status === "reconnecting") showOutOfDate(true);
    else if (status === "offline" || status === "closed") {
      stopCatchUp(); // signed out or stopped: nothing shown to catch up with
      showOutOfDate(false);
    }
  },
  // Events may have been missed while the connection was down: read everything again.
  onReconnect: () => catchUp(),
  // Worded like handleAuth's: whichever of the socket and the first query refuses the token first,
  // the person reads the same thing.
  onAuthError: (reason) =>
    askForToken(`Your API token was not accepted: the live connection was refused (${reason}). Enter a valid token to continue.`),
});

const table = createTable({
  table: $("#users-table"),
  tbody: $("#users-body"),
  onOpen: (id) => openPanel(id),
});

const panel = createPanel({
  panel: $("#panel"),
  body: $("#panel-body"),
  closeButton: $("#panel-close"),
  heading: $("#panel-title"),
  modal: $("#errors-modal"),
  client,
  onUserChange: () => resubscribeRows(),
  onClose: (id) => {
    table.setSelected(null);
    if (!table.focusRow(id)) $("#users-table").querySelector("tr.user-row")?.focus();
    if (panelEntry) {
      panelEntry = false;
      history.back(); // the entry the full-screen panel pushed (its popstate finds it gone)
    }
  },
  onError: (error) => handleAuth(error),
  canRequestSync: () => canRequestSyncs(state.role) && Boolean(state.capabilities?.mutation.has("requestSync")),
});

const filters = createFilters({
  form: $("#filters"),
  note: $("#filters-note"),
  onApply: (filter) => {
    state.filter = filter;
    loadPage("first");
  },
  onClear: (filter) => {
    state.filter = filter;
    loadPage("first");
  },
  onRefresh: () => refreshAll(),
});

// An optional section failing (e.g. a field this server does not serve yet) hides it quietly;
// only a rejected token is reported.
const quiet = (section) => (error) => {
  if (!handleAuth(error)) section.hidden = true;
};

const reasons = createFailureReasons({
  section: $("#failure-reasons"),
  list: $("#reason-list"),
  empty: $("#reasons-empty"),
  suggestions: $("#error-codes"),
  client,
  onPick: (code) => {
    // The pressed reason again: take its filter off.
    filters.applyErrorCode(state.filter?.errorCode === code ? "" : code);
    // On a phone the table is far below the list: show where the answer is.
    const users = $("#users-table");
    if (users.getBoundingClientRect().top > window.innerHeight) users.scrollIntoView({ block: "start" });
  },
  onError: quiet($("#failure-reasons")),
});

const trends = createTrends({
  section: $("#trends"),
  chart: $("#trends-chart"),
  legend: $("#trends-legend"),
  buttons: [...document.querySelectorAll("#trends [data-period]")],
  client,
  onError: quiet($("#trends")),
});

const actions = createActions({
  exportButton: $("#export-csv"),
  retryButton: $("#retry-all"),
  note: $("#action-note"),
  modal: $("#confirm-modal"),
  client,
  filter: () => state.filter,
  total: () => state.totalCount,
  getToken,
  onAuthError: (error) => handleAuth(error ?? new ApiError("The export was refused.", { code: "UNAUTHENTICATED" })),
  onRequested: () => {
    loadMetrics();
    loadPage("reload");
  },
});

// ---- errors -----------------------------------------------------------------------------------

/** Handles a missing / rejected token; returns true when it did. */
function handleAuth(error) {
  if (error instanceof ApiError && error.unauthenticated) {
    // A late answer to a request made with an earlier token must not sign the new one out.
    if (error.token !== undefined && error.token !== getToken()) return true;
    askForToken(`Your API token was not accepted: ${error.message} Enter a valid token to continue.`);
    return true;
  }
  return false;
}

function showPageError(message) {
  el.pageError.hidden = !message;
  el.pageError.textContent = message || "";
}

// ---- token gate -------------------------------------------------------------------------------

function askForToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if ($("#confirm-modal").open) $("#confirm-modal").close();
  stopLive();
  state.started = false;
  panel.close();
  el.main.hidden = true;
  el.changeToken.hidden = true;
  el.gate.hidden = false;
  el.gateMessage.textContent = message
    || "This page reads your tenant's sync status with an API token (a viewer token is enough). It is kept only for this browser tab.";
  el.gateMessage.classList.toggle("error-text", Boolean(message));
  el.tokenInput.value = "";
  el.tokenInput.focus();
}

el.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = el.tokenInput.value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  el.tokenInput.value = "";
  start();
});

el.changeToken.addEventListener("click", () => askForToken(""));

// ---- metrics ----------------------------------------------------------------------------------

function renderMetrics(metrics) {
  if (!metrics) return;
  if (state.metricsAsOf && metrics.asOf && new Date(metrics.asOf) < new Date(state.metricsAsOf)) return;
  state.metricsAsOf = metrics.asOf;
  for (const name of METRIC_NAMES) {
    const node = $(`#metric-${name}`);
    const text = formatNumber(metrics[name]);
    if (node.textContent !== text) {
      const hadValue = node.textContent !== "—";
      node.textContent = text;
      if (hadValue) {
        node.classList.remove("flash");
        void node.offsetWidth;
        node.classList.add("flash");
      }
    }
  }
}

/** Resolves true once the metrics shown are fresh. */
async function loadMetrics() {
  try {
    const data = await client.request(METRICS_QUERY);
    state.metricsAsOf = null; // a fresh read replaces whatever was shown
    renderMetrics(data.syncMetrics);
    reasons.load();
    trends.load();
    return true;
  } catch (error) {
    if (!handleAuth(error)) showPageError(`Could not load the metrics: ${error.message}`);
    return false;
  }
}

// ---- policies ---------------------------------------------------------------------------------

async function loadPolicies() {
  try {
    const all = [];
    let after = null;
    for (let page = 0; page < 100; page += 1) {
      const data = await client.request(POLICIES_QUERY, { first: 100, after });
      all.push(...data.policies.edges.map((e) => e.node));
      if (!data.policies.pageInfo.hasNextPage) break;
      after = data.policies.pageInfo.endCursor;
    }
    filters.setPolicies(all);
  } catch (error) {
    if (!handleAuth(error)) showPageError(`Could not load the policies: ${error.message}`);
  }
}

// ---- users table and pagination --------------------------------------------------------------

/**
 * mode: "first" (page 1), "next", "prev", or "reload" (the same cursor arguments again).
 * Cursors are keyset positions; the offset is tracked here for the "x-y of N" text.
 * Resolves false when the page could not be read (undefined when a newer load took over).
 */
async function loadPage(mode) {
  const size = state.pageSize;
  let args;
  let offset;
  if (mode === "next" && state.pageInfo?.endCursor) {
    args = { first: size, after: state.pageInfo.endCursor };
    offset = state.offset + state.rowCount;
  } else if (mode === "prev" && state.pageInfo?.startCursor && state.offset > 0) {
    args = { last: size, before: state.pageInfo.startCursor };
    offset = Math.max(0, state.offset - size);
  } else if (mode === "reload") {
    args = state.args;
    offset = state.offset;
  } else {
    args = { first: size };
    offset = 0;
  }

  const seq = ++state.loadSeq;
  // Disabling the focused pager button would drop focus to <body>: a keyboard user paging
  // with Enter would start again from the top of the page. Give it back afterwards.
  const pager = [el.prev, el.next].includes(document.activeElement) ? document.activeElement : null;
  table.setLoading(true);
  el.prev.disabled = true;
  el.next.disabled = true;
  try {
    const data = await client.request(USERS_QUERY, { filter: state.filter, ...args });
    if (seq !== state.loadSeq) return;
    const connection = data.syncUsers;
    const users = connection.edges.map((e) => e.node);
    const backward = "last" in args;
    if (backward && !connection.pageInfo.hasPreviousPage) {
      offset = 0;
      // Rows went away before this page: show a full first page instead of a short one.
      if (users.length < size && connection.totalCount > users.length) {
        state.args = { first: size };
        state.offset = 0;
        return loadPage("reload");
      }
    }
    if (!backward && !("after" in args)) offset = 0;
    if (offset >= connection.totalCount && users.length === 0 && connection.totalCount > 0) {
      // The page emptied under us (rows left the filter): go back to the first page.
      state.args = { first: size };
      state.offset = 0;
      return loadPage("reload");
    }
    state.args = args;
    state.offset = offset;
    state.pageInfo = connection.pageInfo;
    state.totalCount = connection.totalCount;
    state.rowCount = users.length;
    showPageError("");
    state.stale.clear();
    renderStale();

    if (users.length) {
      table.showRows(users);
      table.setSelected(panel.userId);
    } else {
      table.showEmpty(
        state.filter
          ? "No users match these filters. Change or clear the filters to see more users."
          : "No users yet. Users appear here once they are added to this tenant.",
      );
    }
    reasons.setActive(state.filter?.errorCode);
    actions.update();
    el.resultCount.textContent = formatRange(offset, users.length, connection.totalCount, {
      filtered: Boolean(state.filter),
    });
    el.prev.disabled = !(offset > 0);
    el.next.disabled = backward
      ? !(offset + users.length < connection.totalCount)
      : !connection.pageInfo.hasNextPage;
    if (pager) refocusPager(pager);
    resubscribeRows();
    return true;
  } catch (error) {
    if (seq !== state.loadSeq) return;
    if (handleAuth(error)) return false;
    state.rowCount = 0;
    state.totalCount = 0;
    actions.update();
    el.resultCount.textContent = "";
    table.showError(`Could not load users: ${error.message}`, () => loadPage("reload"));
    return false;
  } finally {
    if (seq === state.loadSeq) table.setLoading(false);
  }
}

el.pageSize.addEventListener("change", () => {
  state.pageSize = Number(el.pageSize.value) || 10;
  const url = new URL(location.href);
  if (state.pageSize === 10) url.searchParams.delete("size");
  else url.searchParams.set("size", String(state.pageSize));
  history.replaceState(history.state, "", url);
  loadPage("first");
});

/** The filter and page size a reloaded, bookmarked or shared address asks for. */
function restoreFromUrl() {
  state.filter = filters.restoreFromUrl();
  const size = new URLSearchParams(location.search).get("size");
  if ([...el.pageSize.options].some((option) => option.value === size)) {
    el.pageSize.value = size;
    state.pageSize = Number(size);
  }
}
/** After a page turned by the pager: focus where it was (or on the other button once it is the
 * last page), and the new page's first rows in view when they had scrolled above it (phones). */
function refocusPager(pressed) {
  const target = [pressed, pressed === el.next ? el.prev : el.next].find((b) => !b.disabled);
  (target || $("#users-body tr[tabindex]"))?.focus({ preventScroll: true });
  const users = $("#users-table");
  if (users.getBoundingClientRect().top < 0) users.scrollIntoView({ block: "start" });
}

el.prev.addEventListener("click", () => loadPage("prev"));
el.next.addEventListener("click", () => loadPage("next"));

function refreshAll() {
  loadMetrics();
  loadPolicies();
  loadPage("reload");
  panel.refetch();
}

// ---- panel ------------------------------------------------------------------------------------

// On a phone the panel covers the whole page, and Back is how people leave a screen: while it is
// open, a history entry stands for it, so Back closes it rather than the page.
const FULL_SCREEN_PANEL = window.matchMedia("(max-width: 640px)");
let panelEntry = false;

function openPanel(id) {
  table.setSelected(id);
  panel.open(id, table.user(id));
  if (FULL_SCREEN_PANEL.matches && !panelEntry) {
    history.pushState({ panel: id }, "");
    panelEntry = true;
  }
}

window.addEventListener("popstate", () => {
  if (!panelEntry) return;
  panelEntry = false;
  if (panel.isOpen) panel.close();
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if ($("#confirm-modal").open) return; // the dialog closes itself
  // In a field outside the panel, Escape is the field's (a search box clears itself).
  const field = event.target.closest?.("input, select, textarea, [contenteditable]");
  if (field && !el.panel.contains(field)) return;
  if (panel.modalOpen) {
    event.preventDefault();
    panel.closeModal();
  } else if (panel.isOpen) {
    event.preventDefault();
    panel.close();
  }
});

// ---- live updates -----------------------------------------------------------------------------

/** While the live connection is down, say so above everything and grey out what may be stale. */
function showOutOfDate(on) {
  el.main.classList.toggle("out-of-date", on);
  el.panel.classList.toggle("out-of-date", on);
  if (on === Boolean(el.reconnecting.textContent)) return;
  if (!on) {
    el.reconnecting.replaceChildren();
    return;
  }
  const title = document.createElement("strong");
  title.textContent = "Reconnecting…";
  el.reconnecting.replaceChildren(
    title,
    " Live updates are paused; the figures, rows and details shown may be out of date.",
  );
}

function stopCatchUp() {
  clearTimeout(state.catchUp.timer);
  state.catchUp.seq += 1; // a refetch still running must not clear or retry anything
  state.catchUp.delay = 0;
}

/**
 * Refetch everything (after a reconnect, or after reads failed, e.g. SERVICE_UNAVAILABLE while
 * the database is down), retrying with backoff until all succeed; then, if live, clear the
 * out-of-date warning.
 */
async function catchUp() {
  clearTimeout(state.catchUp.timer);
  const seq = ++state.catchUp.seq;
  const results = await Promise.all([loadMetrics(), loadPage("reload"), panel.refetch()]);
  if (seq !== state.catchUp.seq) return; // superseded, or signed out
  if (results.every((ok) => ok !== false)) {
    state.catchUp.delay = 0;
    if (ws.status === "live") showOutOfDate(false); // else the next reconnect catches up again
    return;
  }
  retryCatchUp(seq);
}

function retryCatchUp(seq = ++state.catchUp.seq) {
  state.catchUp.delay = Math.min(20000, Math.max(1000, state.catchUp.delay * 2));
  state.catchUp.timer = setTimeout(() => {
    if (seq === state.catchUp.seq) catchUp();
  }, state.catchUp.delay);
}

function onUserEvent(result) {
  if (cutOff(result)) {
    resync();
    return;
  }
  if (result.errors?.length && !result.data) {
    const error = new ApiError(result.errors[0].message, {
      code: result.errors[0].extensions?.code ?? "GRAPHQL",
      errors: result.errors,
    });
    handleAuth(error);
    return;
  }
  const user = result.data?.syncUserUpdated;
  if (!user) return;
  if (table.applyUpdate(user)) checkStillMatches(user.id);
  panel.applyUpdate(user);
}

/** Say so when live updates make rows shown stop matching the applied filter. */
function checkStillMatches(id) {
  const user = table.user(id);
  if (!user || !state.filter) return;
  const stale = !matchesFilter(user, state.filter);
  if (stale === state.stale.has(id)) return;
  if (stale) state.stale.add(id);
  else state.stale.delete(id);
  table.markStale(id, stale);
  renderStale();
}

function renderStale() {
  const n = state.stale.size;
  el.staleNote.hidden = n === 0;
  el.staleText.textContent = n === 1 ? "1 row no longer matches" : `${n} rows no longer match`;
}

$("#stale-refresh").addEventListener("click", () => refreshAll());

function subscriptionError(what) {
  return (error) => {
    if (handleAuth(error)) return;
    showPageError(`Live updates of ${what} stopped: ${error.message} Use Refresh to see the latest data.`);
  };
}

/** Subscribe to the visible rows and the open panel's user; only when that set changed. */
function resubscribeRows() {
  if (!state.started) return;
  const ids = new Set(table.ids());
  if (panel.userId) ids.add(panel.userId);
  const sorted = [...ids].sort();
  const key = sorted.join(",");
  if (key === state.rowSubs.key) return;
  for (const unsubscribe of state.rowSubs.unsubscribe) unsubscribe();
  const unsubscribe = [];
  for (let i = 0; i < sorted.length; i += MAX_IDS_PER_SUBSCRIPTION) {
    const userIds = sorted.slice(i, i + MAX_IDS_PER_SUBSCRIPTION);
    unsubscribe.push(ws.subscribe(
      { query: USER_UPDATED_SUBSCRIPTION, variables: { userIds } },
      { next: onUserEvent, error: subscriptionError("the table"), complete: () => {} },
    ));
  }
  state.rowSubs = { key, unsubscribe };
}

/** The server ended the subscription because this page fell too far behind (CONFLICT). */
function cutOff(result) {
  return !result.data?.syncUserUpdated && !result.data?.syncMetricsUpdated
    && result.errors?.some((error) => error.extensions?.code === "CONFLICT");
}

/**
 * After a subscription was cut off: subscribe again, and once the server has registered the new
 * subscriptions (ws.barrier()), refetch what they may have missed.
 */
function resync() {
  if (state.resyncing) return; // every cut-off subscription of one burst is answered at once
  state.resyncing = true;
  state.rowSubs.key = ""; // subscribe anew even though the rows shown did not change
  resubscribeRows();
  subscribeMetrics();
  ws.barrier().then((ok) => {
    state.resyncing = false;
    if (ok) catchUp(); // else the reconnect that follows catches up
  });
}

function startLive() {
  ws.start();
  subscribeMetrics();
}

function subscribeMetrics() {
  state.metricsUnsubscribe?.();
  state.metricsUnsubscribe = ws.subscribe(
    { query: METRICS_SUBSCRIPTION, variables: {} },
    {
      next: (result) => {
        if (cutOff(result)) resync();
        else if (result.data?.syncMetricsUpdated) {
          renderMetrics(result.data.syncMetricsUpdated);
          reasons.refreshSoon();
          trends.refreshSoon();
        }
        else if (result.errors?.length) subscriptionError("the metrics")(new ApiError(result.errors[0].message, { code: result.errors[0].extensions?.code }));
      },
      error: subscriptionError("the metrics"),
      complete: () => {},
    },
  );
}

function stopLive() {
  state.metricsUnsubscribe?.();
  state.metricsUnsubscribe = null;
  for (const unsubscribe of state.rowSubs.unsubscribe) unsubscribe();
  state.rowSubs = { key: "", unsubscribe: [] };
  ws.stop();
}

// ---- who is asking, and what this server serves ----------------------------------------------

async function loadCapabilities() {
  try {
    const data = await client.request(CAPABILITIES_QUERY);
    const names = (type, key) => new Set((data[type]?.[key] ?? []).map((f) => f.name));
    state.capabilities = {
      query: names("query", "fields"),
      mutation: names("mutation", "fields"),
      filter: names("filter", "inputFields"),
    };
  } catch (error) {
    if (handleAuth(error)) return;
    state.capabilities = { query: new Set(), mutation: new Set(), filter: new Set() };
  }
  const can = state.capabilities;
  filters.setErrorCodeSupported(can.filter.has("errorCode"));
  actions.setBulkSupported(can.mutation.has("requestSyncs"));
  if (can.query.has("failureReasons")) reasons.enable();
  if (can.query.has("syncTrends")) trends.enable();
  if (can.query.has("viewer")) await loadViewer();
}

async function loadViewer() {
  try {
    const { viewer } = await client.request(VIEWER_QUERY);
    state.role = viewer.role;
    $("#viewer-tenant").textContent = viewer.tenantName;
    $("#viewer-role").textContent = ROLE_LABELS[viewer.role] ?? viewer.role;
    $("#viewer-role").dataset.role = viewer.role;
    $("#viewer-info").title = `Signed in with the token "${viewer.tokenName}"`;
    $("#viewer-info").hidden = false;
  } catch (error) {
    if (handleAuth(error)) return;
    state.role = null;
    $("#viewer-info").hidden = true;
  }
  actions.setRole(state.role);
  panel.rerender();
}

// ---- start ------------------------------------------------------------------------------------

function start() {
  if (!getToken()) {
    askForToken("");
    return;
  }
  state.started = true;
  state.metricsAsOf = null;
  el.gate.hidden = true;
  el.main.hidden = false;
  el.changeToken.hidden = false;
  showPageError("");
  state.role = null;
  actions.setRole(null);
  $("#viewer-info").hidden = true;
  startLive();
  loadCapabilities();
  loadPolicies();
  // Opened during an outage: read again with backoff until it is over.
  Promise.all([loadMetrics(), loadPage("first")]).then((results) => {
    if (state.started && results.includes(false)) retryCatchUp();
  });
}

takeTokenFromUrl();
restoreFromUrl();
start();

// For debugging from the console; not used by the page itself.
window.syncStatusPage = { state, ws };
