"""HTTP routes of the loyalty program under /api/v1/loyalty.

Customers are named by their external id. Every write that moves points carries an
`idempotency_key`: the first call answers 201, a retry with the same key 200 with the same result.
"""

from __future__ import annotations

import datetime as dt

from flask import current_app, g
from flask.views import MethodView

from decision_server import periods
from decision_server.auth.roles import Permission, requires
from decision_server.db import utcnow
from decision_server.jobs.schemas import RunSchema
from decision_server.loyalty import ledger, reports, rewards, schemas, service, tiers
from decision_server.schemas import ErrorSchema, PageQuery, page_response
from decision_server.web import Blueprint, transaction

blp = Blueprint(
    "loyalty",
    __name__,
    url_prefix="/loyalty",
    description="The loyalty program: tiers, members, the points ledger, rewards and redemptions",
)


def _revision():
    return current_app.extensions["rulebook"].current


def _actor() -> str:
    return f"key:{g.principal.name}"


# --- tiers -------------------------------------------------------------------------------------


@blp.route("/tiers")
class Tiers(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.response(200, schemas.TierListSchema)
    def get(self):
        """List the tiers, lowest rank first, with their member counts."""
        with transaction() as session:
            return {"items": tiers.tier_listing(session.connection(), _revision())}

    @requires(Permission.LOYALTY_MANAGE)
    @blp.arguments(schemas.TierInSchema)
    @blp.response(201, schemas.TierSchema)
    def post(self, body):
        """Define a tier (name and rank unique); rules/tiers.yaml decides who qualifies."""
        with transaction(write=True) as session:
            return tiers.create_tier(session.connection(), body, _revision())


@blp.route("/tiers/<id:tier_id>")
class Tier(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.response(200, schemas.TierSchema)
    def get(self, tier_id):
        """Show one tier."""
        with transaction() as session:
            return tiers.tier_view(session.connection(), tier_id, _revision())

    @requires(Permission.LOYALTY_MANAGE)
    @blp.arguments(schemas.TierPatchSchema)
    @blp.response(200, schemas.TierSchema)
    def patch(self, body, tier_id):
        """Change a tier's rank, multiplier, benefits or description."""
        with transaction(write=True) as session:
            return tiers.update_tier(session.connection(), tier_id, body, _revision())

    @requires(Permission.LOYALTY_MANAGE)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="tier_not_found")
    @blp.alt_response(
        409, schema=ErrorSchema, description="tier_in_use (members hold it), tier_in_rules (rules/tiers.yaml gives it)"
    )
    def delete(self, tier_id):
        """Delete a tier no member holds and no rule gives (409 tier_in_use / tier_in_rules otherwise)."""
        with transaction(write=True) as session:
            tiers.delete_tier(session.connection(), tier_id, _revision())


@blp.route("/tier-changes")
class TierChanges(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(schemas.TierChangeQuery, location="query")
    @blp.response(200, schemas.TierChangePageSchema)
    def get(self, query):
        """Tier changes, newest first, by customer and source (enroll, event, review, manual)."""
        after = query.pop("cursor", None)
        with transaction() as session:
            conn = session.connection()
            customer = service.customer_id_of(conn, query["customer_id"]) if query.get("customer_id") else None
            rows = tiers.tier_history(
                conn, limit=query["limit"], before=after[0] if after else None, customer_id=customer, source=query.get("source")
            )
        return page_response(rows, query["limit"])


# --- members -----------------------------------------------------------------------------------


@blp.route("/members")
class Members(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(schemas.LoyaltyMemberQuery, location="query")
    @blp.response(200, schemas.LoyaltyMemberPageSchema)
    def get(self, query):
        """List members in customer order, filtered by tier and minimum balance."""
        after = query.pop("cursor", None)
        limit = query.pop("limit")
        with transaction() as session:
            rows = service.member_listing(session.connection(), limit=limit, after=after[0] if after else None, **query)
        return page_response(rows, limit, position=lambda row: (row["customer_id"],))


@blp.route("/members/<string:customer_id>")
class Member(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.response(200, schemas.LoyaltyMemberDetailSchema)
    def get(self, customer_id):
        """A member's tier, points (balance, pending, available, expiring) and tier history."""
        with transaction() as session:
            conn = session.connection()
            cid = service.customer_id_of(conn, customer_id)
            return {**service.member_view(conn, cid), "external_id": customer_id}


@blp.route("/members/<string:customer_id>/enroll")
class Enroll(MethodView):
    @requires(Permission.LOYALTY_WRITE)
    @blp.arguments(schemas.EnrollInSchema)
    @blp.response(201, schemas.LoyaltyMemberDetailSchema, description="enrolled")
    @blp.alt_response(200, schema=schemas.LoyaltyMemberDetailSchema, description="already a member")
    @blp.alt_response(404, schema=ErrorSchema, description="customer_not_found")
    def post(self, _body, customer_id):
        """Enrol a customer; they start in the tier the rules give them (idempotent)."""
        with transaction(write=True) as session:
            conn = session.connection()
            cid = service.customer_id_of(conn, customer_id)
            _, created = service.enroll(conn, cid, via="api", revision=_revision(), actor=_actor())
            view = {**service.member_view(conn, cid), "external_id": customer_id}
        return view, 201 if created else 200


@blp.route("/members/<string:customer_id>/tier")
class MemberTier(MethodView):
    @requires(Permission.LOYALTY_ADJUST)
    @blp.arguments(schemas.SetTierInSchema)
    @blp.response(200, schemas.LoyaltyMemberDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="customer_not_found")
    @blp.alt_response(409, schema=ErrorSchema, description="not_enrolled")
    def post(self, body, customer_id):
        """Give a member a tier by hand with a reason (admin; recorded as a manual tier change).

        The next tier review applies the downgrade policy to it as to any tier.
        """
        with transaction(write=True) as session:
            conn = session.connection()
            cid = service.customer_id_of(conn, customer_id)
            service.set_tier(conn, cid, body["tier"], actor=_actor(), reason=body["reason"])
            return {**service.member_view(conn, cid), "external_id": customer_id}


@blp.route("/members/<string:customer_id>/ledger")
class Ledger(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(schemas.LedgerQuery, location="query")
    @blp.response(200, schemas.LedgerPageSchema)
    def get(self, query, customer_id):
        """The member's ledger, newest first, by kind and time."""
        after = query.pop("cursor", None)
        limit = query.pop("limit")
        with transaction() as session:
            conn = session.connection()
            cid = service.customer_id_of(conn, customer_id)
            rows = ledger.entries(conn, cid, limit=limit, before=after[0] if after else None, **query)
        return page_response(rows, limit)


def _points(kind: str, body: dict, customer_id: str):
    with transaction(write=True) as session:
        conn = session.connection()
        cid = service.customer_id_of(conn, customer_id)
        write = service.earn if kind == "earn" else service.adjust
        entry, created = write(
            conn,
            cid,
            points=body["points"],
            key=body["idempotency_key"],
            reason=body["reason"],
            actor=_actor(),
            revision=_revision(),
        )
    return {"entry": entry, "status": "created" if created else "existing"}, 201 if created else 200


@blp.route("/members/<string:customer_id>/earn")
class Earn(MethodView):
    @requires(Permission.LOYALTY_WRITE)
    @blp.arguments(schemas.EarnInSchema)
    @blp.response(201, schemas.PointsResultSchema, description="credited")
    @blp.alt_response(200, schema=schemas.PointsResultSchema, description="already credited under this key")
    @blp.alt_response(404, schema=ErrorSchema, description="customer_not_found")
    @blp.alt_response(
        409, schema=ErrorSchema, description="not_enrolled; idempotency_conflict (the key was used for another request)"
    )
    def post(self, body, customer_id):
        """Credit points that do not come from a purchase (purchases earn on their own); may upgrade the tier."""
        return _points("earn", body, customer_id)


@blp.route("/members/<string:customer_id>/adjust")
class Adjust(MethodView):
    @requires(Permission.LOYALTY_ADJUST)
    @blp.arguments(schemas.AdjustInSchema)
    @blp.response(201, schemas.PointsResultSchema, description="adjusted")
    @blp.alt_response(200, schema=schemas.PointsResultSchema, description="already adjusted under this key")
    @blp.alt_response(404, schema=ErrorSchema, description="customer_not_found")
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="insufficient_points (a debit beyond the balance), not_enrolled, idempotency_conflict",
    )
    def post(self, body, customer_id):
        """Correct a balance by hand with a reason (admin); a debit beyond the balance is 409 insufficient_points."""
        return _points("adjust", body, customer_id)


@blp.route("/members/<string:customer_id>/redemptions")
class MemberRedemptions(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, schemas.RedemptionPageSchema)
    def get(self, query, customer_id):
        """The member's redemptions, newest first."""
        after = query.pop("cursor", None)
        with transaction() as session:
            conn = session.connection()
            cid = service.customer_id_of(conn, customer_id)
            rows = rewards.redemptions(conn, limit=query["limit"], before=after[0] if after else None, customer_id=cid)
        return page_response(rows, query["limit"])

    @requires(Permission.LOYALTY_WRITE)
    @blp.arguments(schemas.RedeemInSchema)
    @blp.response(201, schemas.RedemptionSchema, description="redeemed")
    @blp.alt_response(200, schema=schemas.RedemptionSchema, description="already redeemed under this key")
    @blp.alt_response(404, schema=ErrorSchema, description="customer_not_found, reward_not_found")
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="insufficient_points, reward_out_of_stock, tier_not_allowed, reward_unavailable, not_enrolled, idempotency_conflict",
    )
    def post(self, body, customer_id):
        """Redeem a reward: balance, tier, stock and validity checked and taken in one transaction.

        409 with code insufficient_points, reward_out_of_stock, tier_not_allowed, reward_unavailable,
        not_enrolled or idempotency_conflict.
        """
        with transaction(write=True) as session:
            conn = session.connection()
            cid = service.customer_id_of(conn, customer_id)
            row, created = rewards.redeem(
                conn, cid, body["reward_id"], key=body["idempotency_key"], channel=body["channel"], actor=_actor()
            )
            result = rewards.redemption(conn, row["id"])
        return result, 201 if created else 200


# --- redemptions -------------------------------------------------------------------------------


@blp.route("/redemptions")
class Redemptions(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(schemas.RedemptionQuery, location="query")
    @blp.response(200, schemas.RedemptionPageSchema)
    def get(self, query):
        """Redemptions, newest first, by customer, reward and status."""
        after = query.pop("cursor", None)
        limit = query.pop("limit")
        with transaction() as session:
            conn = session.connection()
            if query.get("customer_id"):
                query["customer_id"] = service.customer_id_of(conn, query["customer_id"])
            rows = rewards.redemptions(conn, limit=limit, before=after[0] if after else None, **query)
        return page_response(rows, limit)


@blp.route("/redemptions/<id:redemption_id>")
class Redemption(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.response(200, schemas.RedemptionSchema)
    def get(self, redemption_id):
        """Show one redemption."""
        with transaction() as session:
            return rewards.redemption(session.connection(), redemption_id)


@blp.route("/redemptions/<id:redemption_id>/cancel")
class CancelRedemption(MethodView):
    @requires(Permission.LOYALTY_WRITE)
    @blp.arguments(schemas.CancelInSchema)
    @blp.response(200, schemas.RedemptionSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="redemption_not_found")
    def post(self, body, redemption_id):
        """Cancel a redemption: the points go back to the member, the item back to stock (twice is a no-op)."""
        with transaction(write=True) as session:
            conn = session.connection()
            rewards.cancel(conn, redemption_id, reason=body["reason"], actor=_actor(), revision=_revision())
            return rewards.redemption(conn, redemption_id)


# --- rewards -----------------------------------------------------------------------------------


@blp.route("/rewards")
class Rewards(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(schemas.RewardQuery, location="query")
    @blp.response(200, schemas.RewardPageSchema)
    def get(self, query):
        """List rewards in id order, by status, tier allowed, availability now and cost."""
        after = query.pop("cursor", None)
        limit = query.pop("limit")
        available = query.pop("available", False)
        with transaction() as session:
            rows = rewards.listing(
                session.connection(),
                limit=limit,
                after=after[0] if after else None,
                available_at=utcnow() if available else None,
                **query,
            )
        return page_response(rows, limit)

    @requires(Permission.LOYALTY_MANAGE)
    @blp.arguments(schemas.RewardInSchema)
    @blp.response(201, schemas.RewardSchema)
    def post(self, body):
        """Add a reward (code unique; tiers must be defined)."""
        with transaction(write=True) as session:
            return rewards.create(session.connection(), body)


@blp.route("/rewards/<id:reward_id>")
class Reward(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.response(200, schemas.RewardSchema)
    def get(self, reward_id):
        """Show one reward."""
        with transaction() as session:
            return rewards.get(session.connection(), reward_id)

    @requires(Permission.LOYALTY_MANAGE)
    @blp.arguments(schemas.RewardPatchSchema)
    @blp.response(200, schemas.RewardSchema)
    def patch(self, body, reward_id):
        """Change a reward (set stock, pause, retire, move its dates)."""
        with transaction(write=True) as session:
            return rewards.update(session.connection(), reward_id, body)

    @requires(Permission.LOYALTY_MANAGE)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="reward_not_found")
    @blp.alt_response(409, schema=ErrorSchema, description="reward_in_use: redeemed before; retire it instead")
    def delete(self, reward_id):
        """Delete a reward never redeemed (otherwise retire it: 409 reward_in_use)."""
        with transaction(write=True) as session:
            rewards.delete(session.connection(), reward_id)


# --- program -----------------------------------------------------------------------------------


@blp.route("/statistics")
class Statistics(MethodView):
    @requires(Permission.LOYALTY_READ)
    @blp.arguments(schemas.LoyaltyStatisticsQuery, location="query")
    @blp.response(200, schemas.LoyaltyStatisticsSchema)
    def get(self, query):
        """Members and points by tier, points by kind, redemptions and tier changes since a date (default 30 days)."""
        # Without a start: the 30 days before the end (or before now), never an empty period.
        since = query.get("since") or (query.get("until") or utcnow()) - dt.timedelta(days=30)
        periods.check_period(since, query.get("until"))
        with transaction() as session:
            return service.statistics(session.connection(), since=since, until=query.get("until"))


@blp.route("/statistics/points")
class PointsOverTime(MethodView):
    # Base-wide figures of the whole programme: an analyst's question, not a channel's (no customer asks it).
    @requires(Permission.ANALYTICS_READ)
    @blp.arguments(schemas.PointsOverTimeQuery, location="query")
    @blp.response(200, schemas.PointsOverTimeSchema)
    def get(self, query):
        """Points earned, redeemed and expired per day or week (by business time) in a period (default the last 30 days)."""
        since, until = periods.default_period(query.get("since"), query.get("until"), days=30)
        with transaction() as session:
            return reports.points_over_time(session.connection(), since=since, until=until, interval=query["interval"])


@blp.route("/review")
class Review(MethodView):
    @requires(Permission.LOYALTY_MANAGE)
    @blp.response(202, RunSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="a re-evaluation run holds the job's lease (`job_running`)")
    def post(self):
        """Start the tier review over every member now (upgrades, and downgrades as loyalty_policy.yaml allows).

        It runs as the re-evaluation job with the tiers step: answered at once with the run (202),
        followed at /jobs/runs/{id}, refused (409) while another run (the nightly one) is going.
        """
        return _start_job("tiers")


@blp.route("/expire")
class Expire(MethodView):
    @requires(Permission.LOYALTY_MANAGE)
    @blp.response(202, RunSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="a re-evaluation run holds the job's lease (`job_running`)")
    def post(self):
        """Start expiring every member's points past their expiry date now (the re-evaluation job's expiry step).

        Answered at once with the run (202); follow it at /jobs/runs/{id}.
        """
        return _start_job("expiry")


def _start_job(step: str) -> dict:
    """Run one loyalty step of the re-evaluation job now, in the background, with its lease and record."""
    from decision_server.jobs import reevaluation

    return reevaluation.start(
        current_app.extensions["database"], _revision(), current_app.extensions["models"].current, steps=[step], source="api"
    )
