{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['event', 'environment']) }}",
)}}
/* depends on {{ ref('int_event_changes') }} */
/* depends on {{ ref('int_changed_meters') }} */
{#- Accepted events that no meter counts, so that nothing disappears silently. A batch run
    rewrites the touched events, and every event of a tenant environment whose meters
    changed (macros/incremental/incremental.sql). -#}
with events as (
    select * from {{ ref('int_events_deduplicated') }} as events
    {%- if mh_incremental_batch() %}
    where {{ mh_in_changed_scope(['event', 'environment'], 'events') }}
    {%- endif %}
),

matched_event_ids as (
    select distinct tenant_id, environment_id, event_id
    from {{ ref('int_meter_events') }} as meter_events
    {%- if mh_incremental_batch() %}
    where {{ mh_in_changed_scope(['event', 'environment'], 'meter_events') }}
    {%- endif %}
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
