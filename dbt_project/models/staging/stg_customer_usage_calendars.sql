with source as (
    select * from {{ source('meterhouse', 'customer_usage_calendars') }}
)

select tenant_id, environment_id, external_customer_id, timezone, month_anchor_key
from source
