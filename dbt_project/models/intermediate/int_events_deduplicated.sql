{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['event']) }}",
)}}
/* depends on {{ ref('int_event_changes') }} */
{#- The latest version of every event id (DESIGN 3: a re-sent id replaces the earlier one). -#}
with events as (
    select * from {{ ref('stg_events') }} as events
    {%- if mh_incremental_batch() %}
    where {{ mh_changed('event', 'events') }} and events.ingest_seq <= {{ mh_batch_to() }}
    {%- endif %}
),

ranked_by_version as (
    select
        *,
        row_number() over (
            partition by tenant_id, environment_id, event_id
            order by ingest_seq desc
        ) as version_rank
    from events
),

final as (
    select
        tenant_id,
        environment_id,
        event_id,
        event_name,
        external_customer_id,
        customer_id,
        event_source,
        event_timestamp,
        {{ mh_as_json('properties') }} as properties,
        ingest_seq,
        source_file,
        source_line
    from ranked_by_version
    where version_rank = 1
)

select * from final
