with source as (
    select * from {{ source('meterhouse', 'catalog_customers') }}
)

select
    tenant_id,
    environment_id,
    customer_id,
    external_id as external_customer_id,
    name as customer_name,
    timezone,
    parent_customer_id
from source
