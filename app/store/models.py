"""Tables. Times are integer microseconds since the epoch (see app.domain.timeutil).

`sync_users` holds each user's identity and its one row of current state (status, latest sync,
current run, version, due time), indexed for every filter and order of the Sync Status page.
`status_counts`, `latest_counts` and `change_buckets` are counters kept in the same transaction
as each state change, so metrics and exact counts never scan a million users.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.domain.validation import CODE_MAX, EMAIL_MAX, ITEM_ID_MAX, NAME_MAX

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # The sequence of the tenant's last logged event (EventLog), advanced under this row's
    # lock at the end of each state change, so sequences are gap-free in commit order.
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Null: never expires / not revoked / not used yet. last_used_at lags by up to a minute.
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)


class Policy(Base):
    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_policies_tenant_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    sync_interval_minutes: Mapped[int] = mapped_column(Integer)
    services: Mapped[str] = mapped_column(String(100))  # comma-separated SyncService names
    user_count: Mapped[int] = mapped_column(Integer, default=0)
    # Grows with every change; a user's public version is its own version plus its policy's
    # revision, so toggling a policy of a million users is one row write, not a million.
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class SyncUser(Base):
    __tablename__ = "sync_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email", name="uq_sync_users_tenant_email"),
        Index("ix_sync_users_status_email", "tenant_id", "status", "email"),
        Index("ix_sync_users_policy_email", "tenant_id", "policy_id", "email"),
        Index("ix_sync_users_latest", "tenant_id", "latest_sort", "id"),
        # policy_id and the emails after the key: counts of status + date range + policy +
        # email search are answered from the index alone, without reading rows.
        Index(
            "ix_sync_users_status_latest",
            "tenant_id",
            "status",
            "latest_sort",
            "id",
            "policy_id",
            "email",
            "destination_email",
        ),
        Index("ix_sync_users_policy_latest", "tenant_id", "policy_id", "latest_sort", "id"),
        # A status and a policy together (with a date range and a search): only their users.
        Index(
            "ix_sync_users_status_policy",
            "tenant_id",
            "status",
            "policy_id",
            "latest_sort",
            "id",
            "email",
            "destination_email",
        ),
        # Claims walk due users oldest first: policy_id in the index lets them pass over the due
        # users of inactive policies (never claimed, so the oldest) without reading their rows.
        Index("ix_sync_users_due", "tenant_id", "due_at", "policy_id"),
        # Failed users by errorCode, in each order with every filter column after the key:
        # partial, so only FAILED users are in them (a start takes its user out).
        Index(
            "ix_sync_users_error_email",
            "tenant_id",
            "error_code",
            "email",
            "id",
            "destination_email",
            "policy_id",
            "latest_sort",
            sqlite_where=text("error_code IS NOT NULL"),
            postgresql_where=text("error_code IS NOT NULL"),
        ),
        Index(
            "ix_sync_users_error_latest",
            "tenant_id",
            "error_code",
            "latest_sort",
            "id",
            "policy_id",
            "email",
            "destination_email",
            sqlite_where=text("error_code IS NOT NULL"),
            postgresql_where=text("error_code IS NOT NULL"),
        ),
        # Email search is dialect-specific and lives in the migration: on SQLite the FTS5
        # trigram table sync_users_search and ix_sync_users_emails (tenant_id, email,
        # destination_email); on PostgreSQL one pg_trgm GIN index of both emails (migration 0012).
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    destination_email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policies.id"))
    status: Mapped[str] = mapped_column(String(24))
    latest_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    # latest_sync_at with 0 for never synced: sorts never-synced users last under DESC on both
    # SQLite and PostgreSQL with a plain index, and keeps keyset comparisons free of NULLs.
    latest_sort: Mapped[int] = mapped_column(BigInteger, default=0)
    # When the next delta sync is due (latest start + interval; assignment or request time
    # when never synced or requested); null without a policy. Active is checked at claim time.
    due_at: Mapped[int | None] = mapped_column(BigInteger)
    sync_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    current_run_id: Mapped[int | None] = mapped_column(BigInteger)
    last_finished_run_id: Mapped[int | None] = mapped_column(BigInteger)
    unresolved_failure_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # The errorCode of the most recent finished run while the user is FAILED; null otherwise.
    error_code: Mapped[str | None] = mapped_column(String(CODE_MAX), default=None)


class SyncRequest(Base):
    """A pending "sync now" from requestSyncs, not yet folded into its user's row.

    The user reads as requested (sync_requested, version + bumps; app.store.pending_requests):
    exactly as if its row had been updated, but a bulk request writes one narrow row per user
    here instead of rewriting the wide, heavily indexed sync_users rows. Every writer of a user
    folds the request into the row first. No foreign keys: their per-row checks (PostgreSQL's
    RI triggers take a lock per referenced user) would cost as much as the insert, and users are
    never deleted."""

    __tablename__ = "sync_requests"
    # Claims take requested users oldest request first.
    __table_args__ = (Index("ix_sync_requests_due", "tenant_id", "requested_at", "user_id"),)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tenant_id: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[int] = mapped_column(BigInteger)
    # Requests since the last fold: the version grows by one per request, as a row update would.
    bumps: Mapped[int] = mapped_column(Integer, default=1)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_user", "user_id", "id"),
        # The reaper's candidates (app.lifecycle.timeouts): running runs only, by their latest
        # report, so finding the silent ones reads a few index entries at millions of runs.
        Index(
            "ix_sync_runs_running_report",
            "last_report_at",
            sqlite_where=text("state = 'RUNNING'"),
            postgresql_where=text("state = 'RUNNING'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("sync_users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))
    started_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    items_total: Mapped[int | None] = mapped_column(BigInteger)
    items_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    items_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)
    error_code: Mapped[str | None] = mapped_column(String(CODE_MAX))
    error_message: Mapped[str | None] = mapped_column(Text)
    # When the run last showed a sign of life: its start, then each reportSyncProgress (a
    # report within a second of the last one recorded leaves it). Null for runs finished
    # before migration 0011.
    last_report_at: Mapped[int | None] = mapped_column(BigInteger)


class FailedItem(Base):
    __tablename__ = "failed_items"
    __table_args__ = (
        UniqueConstraint("run_id", "item_id", name="uq_failed_items_run_item"),
        Index("ix_failed_items_run", "run_id", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"))
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_MAX))
    item_type: Mapped[str] = mapped_column(String(CODE_MAX))
    error_code: Mapped[str] = mapped_column(String(CODE_MAX))
    error_message: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[int] = mapped_column(BigInteger)


class StatusCount(Base):
    """Users per (tenant, policy, status); policy_key 0 means no policy."""

    __tablename__ = "status_counts"
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(24), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class LatestCount(Base):
    """Synced users per (tenant, hour of latestSyncAt, policy, status); never-synced users are not
    counted here. An exact count for a date range sums the whole hours inside it here and counts
    only the two partial hours at its ends in the sync_users indexes."""

    __tablename__ = "latest_counts"
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    policy_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(24), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class SearchRevision(Base):
    """Each tenant's emails revision: bumped by triggers (migration 0008) in the transaction of
    any change to its users' emails, so email-search counts cached under it cannot be stale."""

    __tablename__ = "search_revisions"
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger)


class ChangeBucket(Base):
    """Changes reported per tenant and minute, so "last 24 h" sums at most 1,441 rows."""

    __tablename__ = "change_buckets"
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)


# -- Failure triage (migration 0003) ------------------------------------------------------------


class FailureReason(Base):
    """FAILED users per (tenant, errorCode of their most recent finished run), with the message
    and time of the most recent failure with that code. A row goes when its count reaches 0."""

    __tablename__ = "failure_reasons"
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    error_code: Mapped[str] = mapped_column(String(CODE_MAX), primary_key=True)
    user_count: Mapped[int] = mapped_column(BigInteger, default=0)
    sample_message: Mapped[str] = mapped_column(Text, default="")
    last_seen_at: Mapped[int] = mapped_column(BigInteger, default=0)


class TrendBucket(Base):
    """A tenant's activity per hour: changes reported, runs started, runs finished by state."""

    __tablename__ = "trend_buckets"
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)
    runs_started: Mapped[int] = mapped_column(BigInteger, default=0)
    runs_succeeded: Mapped[int] = mapped_column(BigInteger, default=0)
    runs_completed_with_warning: Mapped[int] = mapped_column(BigInteger, default=0)
    runs_failed: Mapped[int] = mapped_column(BigInteger, default=0)


# -- audit log and webhooks ----------------------------------------------------------------------

URL_MAX = 2048


class AuditEvent(Base):
    """Who did what to which object; written in the same transaction as the change."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_at", "tenant_id", "at", "id"),
        Index("ix_audit_events_tenant_action_at", "tenant_id", "action", "at", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(NAME_MAX))
    actor_role: Mapped[str | None] = mapped_column(String(16))  # null for the command line
    action: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(200))  # a global id
    summary: Mapped[str] = mapped_column(Text)


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_tenant", "tenant_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(String(URL_MAX))
    # The subscribed WebhookEvent names, comma-separated and comma-wrapped (",RUN_FAILED,"), so
    # the run's finish selects subscribers with one LIKE.
    events: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean)
    # The signing secret encrypted with the server key (app.webhooks.secret_box): a dump alone
    # cannot sign.
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """The outbox: one row per event and subscribed webhook, written with the run's finish."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # Due deliveries, oldest first (delivered and given-up ones have no next attempt); the
        # webhook beside it, so a claim skips busy endpoints' rows without reading them.
        Index("ix_webhook_deliveries_due", "next_attempt_at", "webhook_id"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, as it will be signed and sent
    created_at: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger)
    # Also the lease while an attempt is under way: a claimer moves it past the attempt's end,
    # so a process that died mid-attempt leaves the delivery due again later, never lost.
    next_attempt_at: Mapped[int | None] = mapped_column(BigInteger)


class EventLog(Base):
    """Each tenant's events in commit order (app.events.event_log), written in the state
    change's transaction and kept for SYNCSTATUS_EVENT_LOG_SECONDS: what a process missed
    while its broker connection was down, it reads here."""

    __tablename__ = "event_log"
    __table_args__ = (Index("ix_event_log_at", "at"),)
    # No foreign key: its check would lock the tenant row once more per event, for a table
    # whose rows are gone within minutes.
    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)  # the event as published (messages.encode)
