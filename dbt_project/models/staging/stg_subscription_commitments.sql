with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_subscription_commitments') }}
)

select
    tenant_id,
    environment_id,
    subscription_id,
    price_id,
    commitment_type,
    cast(commitment_amount as {{ mh_quantity_type() }}) as commitment_amount,
    cast(commitment_quantity as {{ mh_quantity_type() }}) as commitment_quantity,
    cast(overage_factor as {{ mh_quantity_type() }}) as overage_factor,
    true_up_enabled,
    is_windowed
from source
