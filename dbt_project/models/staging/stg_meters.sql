with source as (
    select * from {{ source('meterhouse', 'catalog_meters') }}
)

select
    tenant_id,
    environment_id,
    meter_id,
    name as meter_name,
    event_name,
    aggregation_type,
    aggregation_field,
    aggregation_expression,
    cast(multiplier as {{ mh_quantity_type() }}) as multiplier,
    bucket_size,
    group_by,
    reset_usage,
    definition_hash
from source
