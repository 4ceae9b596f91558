{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['event', 'meter']) }}",
)}}
/* depends on {{ ref('int_event_changes') }} */
/* depends on {{ ref('int_changed_meters') }} */
{#-
  Every (event × meter) pair where the event matches the meter (event_name equal, every
  filter key present with a listed value), with the event's quantity for that meter, or the
  reason it has none. Property values are read here once; later models never parse JSON.
  Meters with a CEL expression compute their quantity in the cel_* CTEs (macros/cel/).
-#}
{#- A batch run pairs the touched events with every meter and every event with the changed
    meters (macros/incremental/incremental.sql). -#}
with events as (
    select
        events.*,
        {{ mh_changed('event', 'events') if mh_incremental_batch() else 'true' }} as event_changed
    from {{ ref('int_events_deduplicated') }} as events
    {%- if mh_incremental_batch() %}
    where {{ mh_in_changed_scope(['event', 'environment'], 'events') }}
    {%- endif %}
),

meters as (
    select
        meters.*,
        {{ mh_changed('meter', 'meters') if mh_incremental_batch() else 'true' }} as meter_changed
    from {{ ref('stg_meters') }} as meters
),

meter_filters as (
    select * from {{ ref('stg_meter_filters') }}
),

{#- read by the filter check and by the matched pairs: streamed to each (DuckDB would store
    every pair with its properties first, then read them twice: 115 s against 60 s at 10M) -#}
paired_with_meters as {{ mh_not_materialized() }} (
    select
        events.tenant_id,
        events.environment_id,
        meters.meter_id,
        meters.aggregation_type,
        meters.aggregation_field,
        meters.aggregation_expression,
        meters.multiplier,
        meters.group_by,
        events.event_id,
        events.external_customer_id,
        events.event_timestamp,
        events.ingest_seq,
        events.properties
    from events
    inner join meters
        on events.tenant_id = meters.tenant_id
        and events.environment_id = meters.environment_id
        and events.event_name = meters.event_name
    where events.event_changed or meters.meter_changed
),

filter_keys as (
    select distinct tenant_id, environment_id, meter_id, filter_key
    from meter_filters
),

filter_properties as (
    select
        pairs.tenant_id,
        pairs.environment_id,
        pairs.meter_id,
        pairs.event_id,
        filter_keys.filter_key,
        {{ mh_json_kind(mh_json_raw_type('pairs.properties', 'filter_keys.filter_key')) }}
            as property_kind,
        {{ mh_json_text('pairs.properties', 'filter_keys.filter_key') }} as property_text
    from paired_with_meters as pairs
    inner join filter_keys
        on pairs.tenant_id = filter_keys.tenant_id
        and pairs.environment_id = filter_keys.environment_id
        and pairs.meter_id = filter_keys.meter_id
),

filter_values as (
    select
        tenant_id,
        environment_id,
        meter_id,
        event_id,
        filter_key,
        {{ mh_canonical_scalar_text('property_kind', 'property_text') }} as property_value
    from filter_properties
),

failed_filters as (
    select distinct
        filter_values.tenant_id,
        filter_values.environment_id,
        filter_values.meter_id,
        filter_values.event_id
    from filter_values
    left join meter_filters
        on filter_values.tenant_id = meter_filters.tenant_id
        and filter_values.environment_id = meter_filters.environment_id
        and filter_values.meter_id = meter_filters.meter_id
        and filter_values.filter_key = meter_filters.filter_key
        and filter_values.property_value = meter_filters.filter_value
    where meter_filters.filter_value is null
),

matched as (
    select pairs.*
    from paired_with_meters as pairs
    left join failed_filters
        on pairs.tenant_id = failed_filters.tenant_id
        and pairs.environment_id = failed_filters.environment_id
        and pairs.meter_id = failed_filters.meter_id
        and pairs.event_id = failed_filters.event_id
    where failed_filters.event_id is null
),

field_read as (
    select
        *,
        {{ mh_json_kind(mh_json_raw_type('properties', 'aggregation_field')) }} as field_kind,
        {{ mh_json_text('properties', 'aggregation_field') }} as field_text,
        {{ mh_json_kind(mh_json_raw_type('properties', 'group_by')) }} as group_kind,
        {{ mh_json_text('properties', 'group_by') }} as group_text
    from matched
),

field_parsed as (
    select
        *,
        case when field_kind in ('number', 'string') then {{ mh_try_decimal('field_text') }} end
            as field_decimal,
        case when field_kind in ('number', 'string')
            then {{ mh_decimal_problem('field_text', mh_try_decimal('field_text')) }} end
            as field_decimal_problem
    from field_read
),

{{ mh_cel_ctes('field_parsed', 'aggregation_expression', 'properties') }}

quantified as (
    select
        *,
        case
            when aggregation_type = 'COUNT' then null
            when aggregation_type = 'COUNT_UNIQUE' then
                case when field_kind in ('object', 'array')
                    then 'value of ' || aggregation_field || ' is an ' || field_kind
                        || ', not a scalar'
                end
            when aggregation_expression is not null then
                case
                    when cel_error is not null then 'expression: ' || cel_error
                    when cel_quantity is null
                        then 'expression: the result does not fit decimal(38, 12)'
                    when {{ mh_multiply('cel_quantity', 'multiplier') }} is null
                        then 'expression: the result times the multiplier is out of range'
                end
            when field_kind is null or field_kind = 'null' then null
            when field_kind in ('boolean', 'object', 'array')
                then 'value of ' || aggregation_field || ' is a ' || field_kind
                    || ', not a number'
            when field_decimal_problem is not null
                then 'value of ' || aggregation_field || ' is ' || field_decimal_problem
                    || ': ' || substr(field_text, 1, 60)
            when {{ mh_multiply('field_decimal', 'multiplier') }} is null
                then 'value of ' || aggregation_field || ' times the multiplier is out of range'
        end as quantity_error,
        case
            when aggregation_type = 'COUNT' then cast(1 as {{ mh_quantity_type() }})
            when aggregation_type = 'COUNT_UNIQUE' then null
            when aggregation_expression is not null
                then {{ mh_multiply('cel_quantity', 'multiplier') }}
            else {{ mh_multiply('field_decimal', 'multiplier') }}
        end as computed_quantity,
        case when aggregation_type = 'COUNT_UNIQUE'
            then {{ mh_canonical_scalar_text('field_kind', 'field_text') }} end as computed_text
    from cel_evaluated
),

final as (
    select
        tenant_id,
        environment_id,
        meter_id,
        aggregation_type,
        external_customer_id,
        event_id,
        event_timestamp,
        {{ mh_trunc_minute('event_timestamp') }} as minute_start,
        ingest_seq,
        case when group_by is not null
            then coalesce({{ mh_canonical_scalar_text('group_kind', 'group_text') }}, '')
            else ''
        end as group_value,
        case when quantity_error is null then computed_quantity end as quantity,
        case when quantity_error is null then computed_text end as value_text,
        quantity_error
    from quantified
)

select * from final
