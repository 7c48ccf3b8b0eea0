"""GraphQL over HTTP for the browser tests (the page's own view is checked against the API), and
small helpers to read the page."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import httpx

STATUS_LABELS = {
    "NEVER_SYNCED": "Never Synced",
    "IN_PROGRESS": "In Progress",
    "SYNCED": "Synced",
    "COMPLETED_WITH_WARNING": "Completed with Warning",
    "FAILED": "Failed",
}

USER_FIELDS = """
  id email destinationEmail status version latestSyncAt unresolvedFailureCount
  policy { id name active }
  currentRun { id state itemsProcessed itemsTotal progress }
"""


class GraphQLError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0].get("message", "GraphQL error"))
        self.errors = errors

    @property
    def code(self) -> str | None:
        return (self.errors[0].get("extensions") or {}).get("code")


class Gql:
    """One token of one server, over plain HTTP POST (as the page and integrations call it)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            self.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        return body["data"]

    # ---- reads -------------------------------------------------------------------------------

    def users(self, filter: dict[str, Any] | None = None, first: int = 100) -> dict[str, Any]:
        """All users of a filter in the page's order (email), up to first (max 100)."""
        data = self(
            f"""query($filter: SyncUserFilter, $first: Int) {{
              syncUsers(filter: $filter, first: $first) {{
                totalCount edges {{ node {{ {USER_FIELDS} }} }}
              }}
            }}""",
            filter=filter,
            first=first,
        )["syncUsers"]
        return {"total": data["totalCount"], "users": [e["node"] for e in data["edges"]]}

    def total(self, filter: dict[str, Any] | None = None) -> int:
        return self(
            """query($filter: SyncUserFilter) {
                 syncUsers(filter: $filter, first: 1) { totalCount }
               }""",
            filter=filter,
        )["syncUsers"]["totalCount"]

    def user(self, user_id: str) -> dict[str, Any]:
        return self(
            f"query($id: ID!) {{ syncUser(id: $id) {{ {USER_FIELDS} }} }}",
            id=user_id,
        )["syncUser"]

    def metrics(self) -> dict[str, Any]:
        return self(
            """{ syncMetrics { usersWithActivePolicy changesLast24h syncsInProgress failedSyncs
                               totalUsers asOf } }"""
        )["syncMetrics"]

    def policies(self) -> list[dict[str, Any]]:
        return [
            e["node"]
            for e in self("{ policies(first: 100) { edges { node { id name active } } } }")[
                "policies"
            ]["edges"]
        ]

    # ---- worker mutations --------------------------------------------------------------------

    def start_run(self, user_id: str, items_total: int | None = None) -> dict[str, Any]:
        return self(
            """mutation($userId: ID!, $itemsTotal: Int) {
                 startSyncRun(userId: $userId, itemsTotal: $itemsTotal) { id state }
               }""",
            userId=user_id,
            itemsTotal=items_total,
        )["startSyncRun"]

    def report(
        self,
        run_id: str,
        processed: int,
        changes: int,
        failed_items: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        return self(
            """mutation($runId: ID!, $p: Int!, $c: Int!, $items: [FailedItemInput!]) {
                 reportSyncProgress(runId: $runId, itemsProcessed: $p, changes: $c,
                                    failedItems: $items) { id state itemsProcessed progress }
               }""",
            runId=run_id,
            p=processed,
            c=changes,
            items=failed_items,
        )["reportSyncProgress"]

    def finish(
        self,
        run_id: str,
        error_code: str | None = None,
        error_message: str | None = None,
        failed_items: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        return self(
            """mutation($runId: ID!, $code: String, $message: String, $items: [FailedItemInput!]) {
                 finishSyncRun(runId: $runId, errorCode: $code, errorMessage: $message,
                               failedItems: $items) { id state }
               }""",
            runId=run_id,
            code=error_code,
            message=error_message,
            items=failed_items,
        )["finishSyncRun"]

    def make_idle(self, user: dict[str, Any]) -> None:
        """Finish the user's running run, if any, so a new one can start."""
        if user.get("currentRun"):
            self.finish(user["currentRun"]["id"])


# ---- page reading helpers ----------------------------------------------------------------------


def range_text(first: int, last: int, total: int) -> str:
    """The page's result count: "1-10 of 250 results", "11 of 11 results", "1 of 1 result"."""
    rows = str(first) if first == last else f"{first}-{last}"
    return f"{rows} of {total} {'result' if total == 1 else 'results'}"


def local_day_bounds(day: date, tz: str) -> tuple[str, str]:
    """What the page must send for a Start date / End date of `day` in time zone tz."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0, 0, 0), zone)
    end = datetime.combine(day, time(23, 59, 59, 999000), zone)
    return iso_millis(start), iso_millis(end)


def iso_millis(moment: datetime) -> str:
    offset = moment.strftime("%z")
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}"
        + (f"{offset[:3]}:{offset[3:]}")
    )


def en_us_datetime(iso: str, tz: str) -> str:
    """Intl.DateTimeFormat('en-US', {dateStyle: 'medium', timeStyle: 'short'}) in tz."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
    hour = moment.hour % 12 or 12
    suffix = "AM" if moment.hour < 12 else "PM"
    return f"{moment:%b} {moment.day}, {moment.year}, {hour}:{moment:%M} {suffix}"


def normalize_space(text: str) -> str:
    return re.sub(r"[\s\u202f\u00a0]+", " ", text).strip()
