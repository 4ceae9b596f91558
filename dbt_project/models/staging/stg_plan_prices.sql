with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_plan_prices') }}
)

select tenant_id, environment_id, plan_id, price_id, position as price_position
from source
