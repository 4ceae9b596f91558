with source as (
    select * from {{ source('meterhouse', 'customer_usage_calendars') }}
)

select
    tenant_id,
    environment_id,
    external_customer_id,
    timezone,
    month_anchor_key,
    {#- the window size this customer's MONTH windows are merged from (fct_meter_usage) -#}
    {{ mh_month_rollup_source('month_anchor_key') }} as month_source
from source
