"""Request and response schemas of the journey routes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from decision_server.journeys.service import SOURCES
from decision_server.schemas import Cursor, JsonDocument, PageQuery, Pattern, Text, Timestamp, page_of


class JourneyTransitionSchema(ma.Schema):
    id = fields.Integer()
    customer_id = fields.String()
    from_stage = fields.String(allow_none=True, metadata={"description": "null: the customer's first journey stage"})
    to_stage = fields.String()
    at = fields.DateTime()
    rule_id = fields.String(allow_none=True, metadata={"description": "the journey rule that decided it (null: manual)"})
    rule_revision = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "event, bulk or manual"})
    actor = fields.String(allow_none=True, metadata={"description": "who moved it by hand (key:<name>)"})
    reason = fields.String(allow_none=True)


JourneyTransitionPageSchema = page_of(JourneyTransitionSchema, "JourneyTransitionPage")


class JourneySchema(ma.Schema):
    customer_id = fields.String()
    stage = fields.String(allow_none=True, metadata={"description": "journey stage now (null: not evaluated yet)"})
    since = fields.DateTime(
        allow_none=True, metadata={"description": "when the customer entered it (null: before any recorded transition)"}
    )
    history = fields.List(fields.Nested(JourneyTransitionSchema), metadata={"description": "transitions, newest first"})
    next_cursor = fields.String(allow_none=True, metadata={"description": "cursor of the next page of history"})


class MoveSchema(ma.Schema):
    # The stages come from the serving rules (rules/journey.yaml), so the spec cannot list them.
    stage = fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "a stage of rules/journey.yaml", "example": "consideration"},
    )
    reason = Text(
        500,
        required=True,
        # Blank = spaces, tabs and line breaks only: the two regex dialects (Python, the spec's ECMA) agree on those.
        validate=Pattern(r"^[\s\S]*[^ \t\r\n][\s\S]*$", error="must not be blank"),
        metadata={"description": "why (not blank)", "example": "asked for a quote on the phone"},
    )


class PeriodQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    since = Timestamp(metadata={"description": "start of the period (default: 30 days before until)"})
    until = Timestamp(metadata={"description": "end of the period, excluded (default: now); after since"})


class HistoryQuerySchema(PageQuery):
    """A page of one customer's journey history, newest first."""

    cursor = Cursor(timed=True, metadata={"description": "next_cursor of the previous page"})


class TransitionQuerySchema(HistoryQuerySchema):
    since = Timestamp(metadata={"description": "transitions at or after this time"})
    until = Timestamp(metadata={"description": "transitions before this time; after since"})
    from_stage = fields.String(validate=ma.validate.Length(min=1, max=32))
    to_stage = fields.String(validate=ma.validate.Length(min=1, max=32))
    source = fields.String(validate=ma.validate.OneOf(SOURCES))


class JourneyStatisticsSchema(ma.Schema):
    since = fields.DateTime()
    until = fields.DateTime()
    distribution = fields.List(
        JsonDocument(), metadata={"description": "[{stage, customers, share}] now, in the journey rule set's order"}
    )
    not_evaluated = fields.Integer(metadata={"description": "customers with no journey stage yet"})
    funnel = fields.List(
        JsonDocument(),
        metadata={
            "description": "[{stage, reached, conversion_to_next}] from awareness onward (dormant is off the funnel): reached = "
            "customers ever at this stage or a later one (history and stage now); conversion_to_next = the share of "
            "them who reached the next stage (null for the last)"
        },
    )
    time_in_stage = fields.List(
        JsonDocument(),
        metadata={
            "description": "[{stage, stays, median_days}] over the stays that ended in the period "
            "(from a transition into the stage to the next one out of it)"
        },
    )
    transitions = JsonDocument(
        metadata={"description": "in the period: {total, by_source: {event, bulk, manual}, matrix: [{from, to, count}]}"}
    )
