{#- Events that match a meter but whose value cannot be used, with the reason (DESIGN 3). -#}
select
    tenant_id,
    environment_id,
    meter_id,
    external_customer_id,
    event_id,
    event_timestamp,
    quantity_error as reason
from {{ ref('int_meter_events') }}
where quantity_error is not null
