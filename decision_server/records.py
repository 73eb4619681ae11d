"""Every table of the project, imported in one place so that the metadata is complete."""

from decision_server.auth.records import ApiKeyRecord, ConsoleSessionRecord
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.db import Base
from decision_server.decisions.records import (
    DecisionActionRecord,
    DecisionRecord,
    DecisionResponseRecord,
    OfferDayRecord,
    OfferLearningRecord,
)
from decision_server.jobs.records import BulkRunRecord, LeaseRecord, ScheduleRecord
from decision_server.journeys.records import JourneyTransitionRecord
from decision_server.lifecycle.records import StageTransitionRecord
from decision_server.loyalty.records import (
    LedgerEntryRecord,
    MemberRecord,
    RedemptionRecord,
    RewardRecord,
    TierChangeRecord,
    TierRecord,
)
from decision_server.offers.records import CatalogConnectorRecord, CatalogSyncRunRecord, OfferRecord
from decision_server.rfm.records import RfmRunRecord
from decision_server.rulebook.records import RulePublicationRecord, RuleRevisionRecord
from decision_server.segments.records import SegmentCountRecord, SegmentMemberRecord, SegmentRecord
from decision_server.studio.records import RuleDraftRecord
from decision_server.touchpoints.records import TouchpointRecord
from decision_server.transactions.records import TransactionRecord

metadata = Base.metadata

__all__ = [
    "RuleDraftRecord",
    "BulkRunRecord",
    "LeaseRecord",
    "ScheduleRecord",
    "JourneyTransitionRecord",
    "ApiKeyRecord",
    "ConsoleSessionRecord",
    "CatalogConnectorRecord",
    "CatalogSyncRunRecord",
    "DecisionActionRecord",
    "DecisionRecord",
    "DecisionResponseRecord",
    "OfferDayRecord",
    "OfferLearningRecord",
    "LedgerEntryRecord",
    "MemberRecord",
    "RedemptionRecord",
    "RewardRecord",
    "TierChangeRecord",
    "TierRecord",
    "OfferRecord",
    "CustomerRecord",
    "CustomerStateRecord",
    "RfmRunRecord",
    "SegmentCountRecord",
    "SegmentMemberRecord",
    "SegmentRecord",
    "StageTransitionRecord",
    "RulePublicationRecord",
    "RuleRevisionRecord",
    "TouchpointRecord",
    "TransactionRecord",
    "metadata",
]
