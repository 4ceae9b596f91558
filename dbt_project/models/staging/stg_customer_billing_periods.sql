with source as (
    select * from {{ source('meterhouse', 'customer_billing_periods') }}
)

select tenant_id, environment_id, external_customer_id, period_start, period_end
from source
