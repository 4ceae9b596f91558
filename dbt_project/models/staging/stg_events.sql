with source as (
    select * from {{ source('meterhouse', 'raw_events') }}
),

renamed as (
    select
        tenant_id,
        environment_id,
        event_id,
        event_name,
        external_customer_id,
        customer_id,
        source as event_source,
        event_timestamp,
        properties,
        ingest_seq,
        ingested_at,
        source_file,
        source_line
    from source
)

select * from renamed
