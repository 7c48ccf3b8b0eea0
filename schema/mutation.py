"""The Mutation type: workers report runs, operators request syncs, admins administer."""

from __future__ import annotations

import strawberry

from app.admin import policies
from app.domain.timeutil import to_micros
from app.domain.validation import FailedItemInput as FailedItemData
from resolvers import mutations
from schema.admin_types import CreatedWebhook, Webhook, WebhookEvent
from schema.enums import Role, RunKind, SyncService
from schema.inputs import FailedItemInput, PolicyInput, SyncUserInput
from schema.scalars import DateTime
from schema.triage import REQUEST_SYNCS
from schema.types import ApiToken, ApiTokenInfo, Info, Policy, SyncRun, SyncUser


def _items(items: list[FailedItemInput] | None) -> list[FailedItemData] | None:
    if items is None:
        return None
    return [FailedItemData(i.item_id, i.item_type, i.error_code, i.error_message) for i in items]


def _policy_input(data: PolicyInput) -> policies.PolicyInput:
    return policies.PolicyInput(
        name=data.name,
        description=data.description,
        active=data.active,
        sync_interval_minutes=data.sync_interval_minutes,
        services=[s.value for s in data.services],
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="WORKER: starts runs for due users (active policy, none running, next sync "
        "time passed or requested). Concurrent callers never get the same user."
    )
    async def claim_due_sync_runs(
        self, info: Info, limit: int = 10, services: list[SyncService] | None = None
    ) -> list[SyncRun]:
        names = [s.value for s in services] if services is not None else None
        runs = await mutations.claim_due_sync_runs(info.context, limit, names)
        return [SyncRun.of(run) for run in runs]

    @strawberry.mutation(description="WORKER: starts a run; CONFLICT if one is running.")
    async def start_sync_run(
        self,
        info: Info,
        user_id: strawberry.ID,
        kind: RunKind | None = None,
        service: SyncService | None = SyncService.MAIL,  # null: the default
        items_total: int | None = None,
    ) -> SyncRun:
        run = await mutations.start_sync_run(
            info.context,
            user_id,
            kind.value if kind else None,
            (service or SyncService.MAIL).value,
            items_total,
        )
        return SyncRun.of(run)

    @strawberry.mutation(
        description="WORKER: cumulative counters; a repeated or late report changes nothing."
    )
    async def report_sync_progress(
        self,
        info: Info,
        run_id: strawberry.ID,
        items_processed: int,
        changes: int,
        items_total: int | None = None,
        failed_items: list[FailedItemInput] | None = None,
    ) -> SyncRun:
        run = await mutations.report_sync_progress(
            info.context, run_id, items_processed, changes, items_total, _items(failed_items)
        )
        return SyncRun.of(run)

    @strawberry.mutation(
        description="WORKER: FAILED with errorCode; else COMPLETED_WITH_WARNING when items "
        "failed; else SUCCEEDED. Finishing a finished run: CONFLICT."
    )
    async def finish_sync_run(
        self,
        info: Info,
        run_id: strawberry.ID,
        error_code: str | None = None,
        error_message: str | None = None,
        failed_items: list[FailedItemInput] | None = None,
    ) -> SyncRun:
        run = await mutations.finish_sync_run(
            info.context, run_id, error_code, error_message, _items(failed_items)
        )
        return SyncRun.of(run)

    @strawberry.mutation(description='OPERATOR: "sync now": the user is due at once.')
    async def request_sync(self, info: Info, user_id: strawberry.ID) -> SyncUser:
        return SyncUser.of(await mutations.request_sync(info.context, user_id))

    request_syncs = REQUEST_SYNCS

    @strawberry.mutation(description="ADMIN: a new policy (inactive unless asked).")
    async def create_policy(self, info: Info, input: PolicyInput) -> Policy:
        return Policy.of(await mutations.create_policy(info.context, _policy_input(input)))

    @strawberry.mutation(description="ADMIN: replaces a policy's settings.")
    async def update_policy(self, info: Info, id: strawberry.ID, input: PolicyInput) -> Policy:
        return Policy.of(await mutations.update_policy(info.context, id, _policy_input(input)))

    @strawberry.mutation(description="ADMIN: deactivating lets running runs finish.")
    async def set_policy_active(self, info: Info, id: strawberry.ID, active: bool) -> Policy:
        return Policy.of(await mutations.set_policy_active(info.context, id, active))

    @strawberry.mutation(
        description="ADMIN: up to 1000 a call; an email already present: CONFLICT, none added."
    )
    async def add_sync_users(self, info: Info, users: list[SyncUserInput]) -> list[SyncUser]:
        rows = [(u.email, u.destination_email, u.policy_id) for u in users]
        return [SyncUser.of(v) for v in await mutations.add_sync_users(info.context, rows)]

    @strawberry.mutation(description="ADMIN: a null policyId unassigns.")
    async def assign_policy(
        self, info: Info, user_ids: list[strawberry.ID], policy_id: strawberry.ID | None = None
    ) -> list[SyncUser]:
        views = await mutations.assign_policy(info.context, user_ids, policy_id)
        return [SyncUser.of(v) for v in views]

    @strawberry.mutation(
        description="ADMIN: a new token, shown once; expiresAt (optional) must be in the future."
    )
    async def create_api_token(
        self, info: Info, name: str, role: Role, expires_at: DateTime | None = None
    ) -> ApiToken:
        expiry = to_micros(expires_at) if expires_at is not None else None
        token, view = await mutations.create_api_token(info.context, name, role.value, expiry)
        return ApiToken.of(token, view)

    @strawberry.mutation(
        description="ADMIN: from then on every request with the token is refused on every "
        "process, and its open WebSockets close with 4403 within 2 s; one already revoked is "
        "returned unchanged."
    )
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> ApiTokenInfo:
        return ApiTokenInfo.of(await mutations.revoke_api_token(info.context, id))

    @strawberry.mutation(
        description="ADMIN: a receiver of signed deliveries; its secret is shown only here."
    )
    async def create_webhook(
        self, info: Info, url: str, events: list[WebhookEvent]
    ) -> CreatedWebhook:
        view, secret = await mutations.create_webhook(info.context, url, [e.value for e in events])
        return CreatedWebhook(webhook=Webhook.of(view), secret=secret)

    @strawberry.mutation(description="ADMIN: removes a webhook; pending deliveries are dropped.")
    async def delete_webhook(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        return strawberry.ID(await mutations.delete_webhook(info.context, id))
