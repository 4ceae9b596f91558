with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_prices') }}
)

select
    tenant_id,
    environment_id,
    price_id,
    price_type,
    meter_id,
    currency,
    currency_precision,
    billing_model,
    tier_mode,
    cast(amount as {{ mh_quantity_type() }}) as amount,
    transform_divide_by as divide_by,
    transform_round as package_round,
    billing_period,
    billing_period_count,
    display_name as price_display_name
from source
