with source as (
    select * from {{ source('meterhouse_pricing', 'subscription_billing_periods') }}
)

select
    tenant_id,
    environment_id,
    subscription_id,
    period_index,
    period_start,
    period_end,
    timezone,
    hour_buckets,
    day_buckets,
    month_buckets
from source
