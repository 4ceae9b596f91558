with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_features') }}
)

select
    tenant_id,
    environment_id,
    feature_id,
    name as feature_name,
    meter_id,
    unit_singular,
    unit_plural,
    reporting_unit_singular,
    reporting_unit_plural,
    cast(reporting_conversion_rate as {{ mh_quantity_type() }}) as reporting_conversion_rate
from source
