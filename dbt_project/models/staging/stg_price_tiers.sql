with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_price_tiers') }}
)

select
    tenant_id,
    environment_id,
    price_id,
    tier_index,
    cast(from_quantity as {{ mh_quantity_type() }}) as from_quantity,
    cast(up_to as {{ mh_quantity_type() }}) as up_to,
    cast(unit_amount as {{ mh_quantity_type() }}) as unit_amount,
    cast(flat_amount as {{ mh_quantity_type() }}) as flat_amount
from source
