// Starts GraphiQL (a classic script: React, ReactDOM and GraphiQL are the UMD globals loaded
// before it). Query and variables may come from the URL (?query=…&variables=…) so links can
// share them; headers never do, since they carry the token: GraphiQL keeps them in
// localStorage for this browser only.
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

  function App() {
    return React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: DEFAULT_QUERY,
      query: params.get("query") ?? undefined,
      variables: params.get("variables") ?? undefined,
      onEditQuery: (value) => setParam("query", value),
      onEditVariables: (value) => setParam("variables", value),
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(App));
})();
