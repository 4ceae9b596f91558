"""The closed vocabularies of the catalog and the read API, spelled as the specs spell them.

Values are the exact strings of the Flexprice API (`types.AggregationType`, `types.WindowSize`,
`types.BillingPeriod`, ...), so a value read from YAML or a request is the enum member itself.
"""

from __future__ import annotations

from enum import StrEnum


class AggregationType(StrEnum):
    """How a meter turns matching events into a usage value (DESIGN section 3)."""

    COUNT = "COUNT"
    SUM = "SUM"
    AVG = "AVG"
    COUNT_UNIQUE = "COUNT_UNIQUE"
    LATEST = "LATEST"
    SUM_WITH_MULTIPLIER = "SUM_WITH_MULTIPLIER"
    MAX = "MAX"
    WEIGHTED_SUM = "WEIGHTED_SUM"


class WindowSize(StrEnum):
    """The ten window sizes of the analytics endpoints."""

    MINUTE = "MINUTE"
    MIN15 = "15MIN"
    MIN30 = "30MIN"
    HOUR = "HOUR"
    HOUR3 = "3HOUR"
    HOUR6 = "6HOUR"
    HOUR12 = "12HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


class BucketSize(StrEnum):
    """`aggregation.bucket_size`: the buckets a bucketed MAX meter is priced on."""

    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


class ResetUsage(StrEnum):
    """Whether usage starts again at each billing period or accumulates forever."""

    BILLING_PERIOD = "BILLING_PERIOD"
    NEVER = "NEVER"


class MeterStatus(StrEnum):
    """Lifecycle of a meter, as in the create-meter response."""

    PUBLISHED = "published"
    DRAFT = "draft"
    ARCHIVED = "archived"


class BillingModel(StrEnum):
    """How a price turns a quantity into money."""

    FLAT_FEE = "FLAT_FEE"
    PACKAGE = "PACKAGE"
    TIERED = "TIERED"


class TierMode(StrEnum):
    """VOLUME charges all units at one tier; SLAB fills the tiers in order."""

    VOLUME = "VOLUME"
    SLAB = "SLAB"


class BillingPeriod(StrEnum):
    """`types.BillingPeriod` of the Price and SubscriptionLineItem schemas."""

    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    HALF_YEARLY = "HALF_YEARLY"
    ANNUAL = "ANNUAL"
    ONETIME = "ONETIME"


class PriceType(StrEnum):
    """USAGE prices are driven by a meter; FIXED prices are a recurring fee."""

    USAGE = "USAGE"
    FIXED = "FIXED"


class RoundType(StrEnum):
    """`transform_quantity.round` of a PACKAGE price: whole packages up or down."""

    UP = "up"
    DOWN = "down"


class CommitmentType(StrEnum):
    """`types.CommitmentType`: a commitment on spend or on quantity."""

    AMOUNT = "amount"
    QUANTITY = "quantity"


_SUB_DAY_MINUTES: dict[WindowSize, int] = {
    WindowSize.MINUTE: 1,
    WindowSize.MIN15: 15,
    WindowSize.MIN30: 30,
    WindowSize.HOUR: 60,
    WindowSize.HOUR3: 180,
    WindowSize.HOUR6: 360,
    WindowSize.HOUR12: 720,
}


def window_minutes(window_size: WindowSize) -> int | None:
    """Length in wall-clock minutes of a sub-day window; None for DAY, WEEK and MONTH."""
    return _SUB_DAY_MINUTES.get(WindowSize(window_size))
