// The GraphQL operations of the page. Only names from the public contract are used.

const RUN_FIELDS = `
  fragment RunFields on SyncRun {
    id
    kind
    service
    state
    startedAt
    finishedAt
    durationSeconds
    itemsTotal
    itemsProcessed
    itemsFailed
    changes
    progress
    errorCode
    errorMessage
  }
`;

// Everything a table row and the panel's overview show; also what live events carry.
const LIVE_USER_FIELDS = `
  fragment LiveUserFields on SyncUser {
    id
    email
    destinationEmail
    version
    status
    latestSyncAt
    nextScheduledSyncAt
    unresolvedFailureCount
    policy { id name active }
    currentRun { ...RunFields }
    lastFinishedRun { ...RunFields }
  }
  ${RUN_FIELDS}
`;

const FAILED_ITEM_FIELDS = `
  fragment FailedItemFields on FailedItem {
    itemId
    itemType
    errorCode
    errorMessage
    failedAt
  }
`;

const METRICS_FIELDS = `
  fragment MetricsFields on SyncMetrics {
    usersWithActivePolicy
    changesLast24h
    syncsInProgress
    failedSyncs
    totalUsers
    asOf
  }
`;

export const METRICS_QUERY = `
  query SyncMetrics { syncMetrics { ...MetricsFields } }
  ${METRICS_FIELDS}
`;

export const METRICS_SUBSCRIPTION = `
  subscription SyncMetricsUpdated { syncMetricsUpdated { ...MetricsFields } }
  ${METRICS_FIELDS}
`;

export const POLICIES_QUERY = `
  query Policies($first: Int!, $after: String) {
    policies(first: $first, after: $after) {
      edges { node { id name active } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

export const USERS_QUERY = `
  query SyncUsers($filter: SyncUserFilter, $first: Int, $after: String, $last: Int, $before: String) {
    syncUsers(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { ...LiveUserFields } }
    }
  }
  ${LIVE_USER_FIELDS}
`;

export const USER_UPDATED_SUBSCRIPTION = `
  subscription SyncUserUpdated($userIds: [ID!]) {
    syncUserUpdated(userIds: $userIds) { ...LiveUserFields }
  }
  ${LIVE_USER_FIELDS}
`;

export const USER_DETAIL_QUERY = `
  query SyncUserDetail($id: ID!, $runsFirst: Int!) {
    syncUser(id: $id) {
      ...LiveUserFields
      lastFinishedRun {
        id
        failedItems(first: 25) { totalCount edges { node { ...FailedItemFields } } }
      }
      runs(first: $runsFirst) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { ...RunFields } }
      }
    }
  }
  ${LIVE_USER_FIELDS}
  ${FAILED_ITEM_FIELDS}
`;

export const USER_RUNS_QUERY = `
  query SyncUserRuns($id: ID!, $first: Int!, $after: String) {
    syncUser(id: $id) {
      id
      runs(first: $first, after: $after) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { ...RunFields } }
      }
    }
  }
  ${RUN_FIELDS}
`;

// The user's recent runs with their errors, for the "View errors" modal.
export const USER_FAILURES_QUERY = `
  query SyncUserFailures($id: ID!, $first: Int!, $after: String) {
    syncUser(id: $id) {
      id
      unresolvedFailureCount
      runs(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        edges {
          node {
            ...RunFields
            failedItems(first: 25) { totalCount edges { node { ...FailedItemFields } } }
          }
        }
      }
    }
  }
  ${RUN_FIELDS}
  ${FAILED_ITEM_FIELDS}
`;

// ---- second wave: each is optional; the page hides what the server does not serve ----------

// What this server serves, so the page can leave out sections it cannot fill.
export const CAPABILITIES_QUERY = `
  query Capabilities {
    query: __type(name: "Query") { fields { name } }
    mutation: __type(name: "Mutation") { fields { name } }
    filter: __type(name: "SyncUserFilter") { inputFields { name } }
  }
`;

export const VIEWER_QUERY = `
  query Viewer { viewer { tenantName tokenName role } }
`;

export const FAILURE_REASONS_QUERY = `
  query FailureReasons($first: Int!) {
    failureReasons(first: $first) { errorCode sampleMessage userCount lastSeenAt }
  }
`;

export const TRENDS_QUERY = `
  query SyncTrends($since: DateTime!, $until: DateTime, $bucket: TrendBucket!) {
    syncTrends(since: $since, until: $until, bucket: $bucket) {
      at changes runsStarted runsSucceeded runsCompletedWithWarning runsFailed
    }
  }
`;

export const REQUEST_SYNC_MUTATION = `
  mutation RequestSync($userId: ID!) { requestSync(userId: $userId) { id version nextScheduledSyncAt } }
`;

export const REQUEST_SYNCS_MUTATION = `
  mutation RequestSyncs($filter: SyncUserFilter!) { requestSyncs(filter: $filter) { requested skipped } }
`;
