{#- Accepted events that no meter counts, so that nothing disappears silently. -#}
with events as (
    select * from {{ ref('int_events_deduplicated') }}
),

matched_event_ids as (
    select distinct tenant_id, environment_id, event_id
    from {{ ref('int_meter_events') }}
)

select
    events.tenant_id,
    events.environment_id,
    events.event_id,
    events.event_name,
    events.external_customer_id,
    events.event_timestamp,
    events.source_file,
    events.source_line
from events
left join matched_event_ids
    on events.tenant_id = matched_event_ids.tenant_id
    and events.environment_id = matched_event_ids.environment_id
    and events.event_id = matched_event_ids.event_id
where matched_event_ids.event_id is null
