{#- The index is Postgres's: DuckDB would keep an ART index of every row in memory (2.5 GB at
    10 million events, which then starves every later model of its memory limit), and its
    readers use sorted serving copies and zone maps instead. -#}
{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['event', 'meter']) }}",
    indexes=[{'columns': ['tenant_id', 'environment_id', 'meter_id', 'external_customer_id',
                          'minute_start']}] if target.type == 'postgres' else [],
)}}
/* depends on {{ ref('int_event_changes') }} */
/* depends on {{ ref('int_changed_meters') }} */
{#-
  What the read API filters and groups by: one row per event a meter counts (with a usable
  value), carrying the event's source and its properties. Property filters, group_by
  properties, sources and Stripe dimensions are answered from here, exactly, for every
  aggregation type; queries without them read fct_meter_usage_minutely instead.
  Properties stay JSON: the API reads only the few it is asked about, for the rows of one
  meter, customer and range, in canonical form (DESIGN 3b.5) — cheaper than canonicalising
  every property of every event at build time.
  Ordered by meter, customer and minute so that DuckDB's zone maps skip what a query does
  not ask for (Postgres: the index below).
-#}
with meter_events as (
    select * from {{ ref('int_meter_events') }} as meter_events
    where quantity_error is null
    {%- if mh_incremental_batch() %}
        and {{ mh_in_changed_scope(['event', 'meter'], 'meter_events') }}
    {%- endif %}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
),

final as (
    select
        meter_events.tenant_id,
        meter_events.environment_id,
        meter_events.meter_id,
        meter_events.external_customer_id,
        meter_events.event_id,
        meter_events.event_timestamp,
        meter_events.minute_start,
        meter_events.ingest_seq,
        events.event_source,
        meter_events.group_value,
        meter_events.quantity,
        meter_events.value_text,
        events.properties
    from meter_events
    inner join events
        on meter_events.tenant_id = events.tenant_id
        and meter_events.environment_id = events.environment_id
        and meter_events.event_id = events.event_id
)

select * from final
order by tenant_id, environment_id, meter_id, external_customer_id, minute_start
