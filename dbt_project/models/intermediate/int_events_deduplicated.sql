{#- The latest version of every event id (DESIGN 3: a re-sent id replaces the earlier one). -#}
with events as (
    select * from {{ ref('stg_events') }}
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
