{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['minute', 'meter']) }}",
)}}
/* depends on {{ ref('int_event_changes') }} */
/* depends on {{ ref('int_changed_meters') }} */
{#-
  The distinct values of COUNT_UNIQUE meters per minute, so that distinct counts over any
  range are exact. Grain: tenant × environment × meter × customer × minute × value.
-#}
with meter_events as (
    select * from {{ ref('int_meter_events') }} as meter_events
    where aggregation_type = 'COUNT_UNIQUE'
        and quantity_error is null
        and value_text is not null
        {%- if mh_incremental_batch() %}
        and {{ mh_in_changed_scope(['minute', 'meter'], 'meter_events') }}
        {%- endif %}
)

select distinct
    tenant_id,
    environment_id,
    meter_id,
    external_customer_id,
    minute_start,
    value_text
from meter_events
