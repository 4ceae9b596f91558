{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['minute', 'meter']) }}",
)}}
/* depends on {{ ref('int_event_changes') }} */
/* depends on {{ ref('int_changed_meters') }} */
{#-
  Mergeable usage states per minute: the base every window size and every requested range
  is computed from (DESIGN 7). Grain: tenant × environment × meter × customer × group × minute.
  weighted_moment_us = Σ quantity × (microseconds since the minute start), so that the
  time integral of a WEIGHTED_SUM level over any minute-aligned range is exact.
-#}
with meter_events as (
    select * from {{ ref('int_meter_events') }} as meter_events
    where quantity_error is null
    {%- if mh_incremental_batch() %}
        and {{ mh_in_changed_scope(['minute', 'meter'], 'meter_events') }}
    {%- endif %}
),

with_latest_rank as (
    {{ mh_latest_ranked('meter_events', ['tenant_id', 'environment_id', 'meter_id',
        'external_customer_id', 'group_value', 'minute_start']) }}
),

aggregated as (
    select
        tenant_id,
        environment_id,
        meter_id,
        external_customer_id,
        group_value,
        minute_start,
        max(aggregation_type) as aggregation_type,
        count(*) as event_count,
        count(quantity) as value_count,
        count(value_text) as text_count,
        sum(quantity) as value_sum,
        max(quantity) as value_max,
        sum(quantity * ({{ mh_epoch_us('event_timestamp') }} - {{ mh_epoch_us('minute_start') }}))
            as weighted_moment_us,
        {{ mh_latest_value('event_timestamp') }} as latest_timestamp,
        {{ mh_latest_value('ingest_seq') }} as latest_ingest_seq,
        {{ mh_latest_value('event_id') }} as latest_event_id,
        {{ mh_latest_value('quantity') }} as latest_value
    from with_latest_rank
    group by 1, 2, 3, 4, 5, 6
),

final as (
    select
        tenant_id,
        environment_id,
        meter_id,
        external_customer_id,
        group_value,
        minute_start,
        aggregation_type,
        event_count,
        value_count,
        text_count,
        cast(value_sum as {{ mh_quantity_type() }}) as value_sum,
        cast(value_max as {{ mh_quantity_type() }}) as value_max,
        cast(weighted_moment_us as {{ mh_quantity_type() }}) as weighted_moment_us,
        latest_timestamp,
        latest_ingest_seq,
        latest_event_id,
        cast(latest_value as {{ mh_quantity_type() }}) as latest_value
    from aggregated
)

select * from final
