{#-
  The event ids a batch run touches, with every version of each (the version that wins now
  and the ones it replaces), so that the minutes the earlier versions counted in are
  recomputed too. Empty in a full build. Grain: tenant × environment × event id × version.
  See macros/incremental/incremental.sql.
-#}
with events as (
    select * from {{ ref('stg_events') }}
),

{% if mh_batch_run() %}
touched_ids as (
    select distinct tenant_id, environment_id, event_id
    from events
    where ingest_seq > {{ mh_batch_from() }} and ingest_seq <= {{ mh_batch_to() }}
    {%- if var('mh_rebuild_from', none) is not none %}

    union

    select distinct tenant_id, environment_id, event_id
    from events
    where event_timestamp >= cast('{{ var("mh_rebuild_from") }}' as {{ mh_timestamptz() }})
        and event_timestamp < cast('{{ var("mh_rebuild_to") }}' as {{ mh_timestamptz() }})
        and ingest_seq <= {{ mh_batch_to() }}
    {%- endif %}
),
{% endif %}

final as (
    select distinct
        events.tenant_id,
        events.environment_id,
        events.event_id,
        events.external_customer_id,
        {{ mh_trunc_minute('events.event_timestamp') }} as minute_start
    from events
    {%- if mh_batch_run() %}
    inner join touched_ids
        on events.tenant_id = touched_ids.tenant_id
        and events.environment_id = touched_ids.environment_id
        and events.event_id = touched_ids.event_id
    where events.ingest_seq <= {{ mh_batch_to() }}
    {%- else %}
    where 1 = 0
    {%- endif %}
)

select * from final
