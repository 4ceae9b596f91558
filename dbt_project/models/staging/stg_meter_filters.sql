with source as (
    select * from {{ source('meterhouse', 'catalog_meter_filters') }}
)

select tenant_id, environment_id, meter_id, filter_key, filter_value
from source
