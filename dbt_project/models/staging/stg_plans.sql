with source as (
    select * from {{ source('meterhouse_pricing', 'catalog_plans') }}
)

select tenant_id, environment_id, plan_id, name as plan_name
from source
