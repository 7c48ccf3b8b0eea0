// Filter controls. Editing them changes nothing until Apply filters (or Enter in the search box);
// Clear filters resets them and applies the empty filter; Refresh reloads with the applied ones.
// The applied filter is kept in the address (?status=FAILED&policy=…), so a filtered view can be
// reloaded, bookmarked and shared; the token never is (it stays in this tab's storage).

import { h } from "./dom.js";
import { STATUS_LABELS, localDayEnd, localDayStart } from "./format.js";

// The controls' names, as the address's query parameters.
const URL_KEYS = ["email", "start", "end", "policy", "status", "errorCode"];

export function createFilters({ form, note, onApply, onClear, onRefresh }) {
  const email = form.elements.namedItem("email");
  const start = form.elements.namedItem("start");
  const end = form.elements.namedItem("end");
  const policy = form.elements.namedItem("policy");
  const status = form.elements.namedItem("status");
  const errorCode = form.elements.namedItem("errorCode");
  const errorCodeField = errorCode.closest(".field");
  let applied = snapshot();

  for (const [value, label] of Object.entries(STATUS_LABELS)) {
    status.append(h("option", { value }, label));
  }

  function snapshot() {
    return {
      email: email.value.trim(),
      start: start.value,
      end: end.value,
      policy: policy.value,
      status: status.value,
      errorCode: errorCodeField.hidden ? "" : errorCode.value.trim(),
    };
  }

  function same(a, b) {
    return Object.keys(a).every((key) => a[key] === b[key]);
  }

  function showNote(text, isError = false) {
    note.hidden = !text;
    note.textContent = text || "";
    note.classList.toggle("error-text", isError);
    note.setAttribute("role", isError ? "alert" : "status");
  }

  function updatePendingNote() {
    const pending = !same(snapshot(), applied);
    showNote(pending ? "Filters changed: click Apply filters to update the table." : "");
  }

  form.addEventListener("input", updatePendingNote);
  form.addEventListener("change", updatePendingNote);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });

  function apply() {
    const next = snapshot();
    if (next.start && next.end && next.start > next.end) {
      showNote("Start date must be on or before End date.", true);
      start.focus();
      return;
    }
    applied = next;
    showNote("");
    writeUrl(applied);
    onApply(toFilter(applied));
  }

  form.querySelector("#clear-filters").addEventListener("click", () => {
    form.reset();
    applied = snapshot();
    showNote("");
    writeUrl(applied);
    onClear(toFilter(applied));
  });

  form.querySelector("#refresh").addEventListener("click", () => onRefresh());

  return {
    /** Set the controls from the address (an unknown status or a malformed date is left
     * out, as the controls would refuse it) and make that the applied filter. */
    restoreFromUrl() {
      const params = new URLSearchParams(location.search);
      email.value = params.get("email") ?? "";
      start.value = params.get("start") ?? "";
      end.value = params.get("end") ?? "";
      status.value = params.get("status") ?? "";
      const policyId = params.get("policy");
      if (policyId) {
        // The policies load later (setPolicies keeps this choice if the policy exists).
        policy.append(h("option", { value: policyId }, "…"));
        policy.value = policyId;
      }
      const code = params.get("errorCode");
      if (code) {
        errorCodeField.hidden = false; // until the server says whether it serves errorCode
        errorCode.value = code;
      }
      applied = snapshot();
      if (applied.start && applied.end && applied.start > applied.end) applied.end = end.value = "";
      return toFilter(applied);
    },

    /** Fill the Policy dropdown, keeping the current choice when it still exists. */
    setPolicies(policies) {
      const current = policy.value;
      const options = [h("option", { value: "" }, "Select a policy")];
      for (const p of policies) options.push(h("option", { value: p.id }, p.name));
      policy.replaceChildren(...options);
      policy.value = policies.some((p) => p.id === current) ? current : "";
    },

    /** The Error code filter exists only where the server serves SyncUserFilter.errorCode. */
    setErrorCodeSupported(supported) {
      errorCodeField.hidden = !supported;
      if (!supported) errorCode.value = "";
    },

    /** A failure reason was picked: filter the table by its error code (other filters stay). */
    applyErrorCode(code) {
      errorCode.value = code;
      apply();
    },

    /** The filter that is applied now (not what the controls show). */
    appliedFilter() {
      return toFilter(applied);
    },
  };
}

/** The applied values in the address, beside whatever else it holds. */
function writeUrl(values) {
  const url = new URL(location.href);
  for (const key of URL_KEYS) {
    if (values[key]) url.searchParams.set(key, values[key]);
    else url.searchParams.delete(key);
  }
  history.replaceState(history.state, "", url);
}

/** Control values → SyncUserFilter (only the parts that are set), or null. */
export function toFilter(values) {
  const filter = {};
  if (values.email) filter.emailContains = values.email;
  if (values.start) filter.latestSyncFrom = localDayStart(values.start);
  if (values.end) filter.latestSyncTo = localDayEnd(values.end);
  if (values.policy) filter.policyId = values.policy;
  if (values.status) filter.status = values.status;
  if (values.errorCode) filter.errorCode = values.errorCode;
  return Object.keys(filter).length ? filter : null;
}

/**
 * Whether a user (as a live event left it) still matches an applied filter. emailContains is
 * not checked: addresses do not change in events.
 */
export function matchesFilter(user, filter) {
  if (!filter) return true;
  if (filter.status && user.status !== filter.status) return false;
  if (filter.policyId && user.policy?.id !== filter.policyId) return false;
  if (filter.errorCode && (user.status !== "FAILED" || user.lastFinishedRun?.errorCode !== filter.errorCode)) {
    return false;
  }
  if (filter.latestSyncFrom || filter.latestSyncTo) {
    if (!user.latestSyncAt) return false;
    const at = Date.parse(user.latestSyncAt);
    if (filter.latestSyncFrom && at < Date.parse(filter.latestSyncFrom)) return false;
    if (filter.latestSyncTo && at > Date.parse(filter.latestSyncTo)) return false;
  }
  return true;
}
