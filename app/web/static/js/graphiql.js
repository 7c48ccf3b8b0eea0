// Starts GraphiQL (a classic script: React, ReactDOM and GraphiQL are the UMD globals loaded
// before it). Query and variables live in the URL (?q=…&variables=…; not ?query=, which /graphql
// would run as a GET request) so links can share them; headers never do, since they carry the
// token, and they are not saved either (enter the token again after a reload).
(function startGraphiQL() {
  "use strict";

  const DEFAULT_QUERY = `# Sync Status · GraphiQL
#
# Queries need a token. Open "Headers" below and enter:
#   {"Authorization": "Bearer <token>"}
# The Docs explorer works without one.
#
# Run: Ctrl-Enter   Autocomplete: Ctrl-Space

query Overview {
  syncMetrics {
    usersWithActivePolicy
    changesLast24h
    syncsInProgress
    failedSyncs
    asOf
  }
}
`;

  const params = new URLSearchParams(location.search);
  const url = `${location.origin}${location.pathname}`;
  const subscriptionUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${location.pathname}`;

  function setParam(name, value) {
    const next = new URLSearchParams(location.search);
    if (value) next.set(name, value);
    else next.delete(name);
    const search = next.toString();
    history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}`);
  }

  const fetcher = GraphiQL.createFetcher({ url, subscriptionUrl });

  // GraphiQL saves tabs and query history in localStorage, headers included (its history does so
  // even with shouldPersistHeaders off): every value is stored without its "headers" keys.
  function withoutHeaders(value) {
    try {
      return JSON.stringify(JSON.parse(value), (key, v) => (key === "headers" ? undefined : v));
    } catch {
      return value;
    }
  }
  const storage = {
    getItem: (key) => localStorage.getItem(key),
    setItem: (key, value) => localStorage.setItem(key, withoutHeaders(value)),
    removeItem: (key) => localStorage.removeItem(key),
    clear: () => localStorage.clear(),
    get length() {
      return localStorage.length;
    },
  };

  function App() {
    return React.createElement(GraphiQL, {
      fetcher,
      storage,
      defaultQuery: DEFAULT_QUERY,
      query: params.get("q") ?? undefined,
      variables: params.get("variables") ?? undefined,
      onEditQuery: (value) => setParam("q", value),
      onEditVariables: (value) => setParam("variables", value),
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false, // the token is never written to localStorage
      inputValueDeprecation: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(App));
})();
