with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_subscriptions') }}
)

select
    tenant_id,
    environment_id,
    subscription_id,
    customer_id,
    external_customer_id,
    plan_id,
    currency,
    currency_precision,
    start_date,
    end_date,
    billing_anchor,
    billing_period,
    billing_period_count
from source
