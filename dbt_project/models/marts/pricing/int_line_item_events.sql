{#-
  The events a line item is priced on, in its usage segments (int_line_item_periods), in
  event order (timestamp, ingest_seq, event_id: event_ordinal), with the usage state after
  each event: running sum, max, distinct values (COUNT_UNIQUE), the weighted-sum moment
  (WEIGHTED_SUM) and, for bucketed MAX meters, the max of the event's (meter bucket, group)
  so far. The usage at any instant is the state after the last event before it
  (int_line_item_instants). Windows run on narrow rows, and each state only on the events
  of the meters that use it: sorting is what costs here.
  Grain: line_item_key × segment_index × event_ordinal.
-#}
{%- set segment_so_far = 'partition by line_item_key, segment_index order by event_ordinal '
    ~ 'rows between unbounded preceding and current row' -%}

with meter_events as (
    select * from {{ ref('int_meter_events') }}
    where quantity_error is null and (quantity is not null or value_text is not null)
),

periods as (
    select * from {{ ref('int_line_item_periods') }}
),

customer_calendars as (
    select * from {{ ref('stg_customer_usage_calendars') }}
),

calendar as (
    select * from {{ ref('stg_calendar_buckets') }}
),

segments as (
    select distinct
        line_item_key,
        tenant_id,
        environment_id,
        price_id,
        meter_id,
        external_customer_id,
        aggregation_type,
        bucket_size,
        is_priced_per_bucket,
        segment_index,
        segment_start,
        segment_end
    from periods
),

numbered as (
    select
        segments.line_item_key,
        segments.tenant_id,
        segments.environment_id,
        segments.price_id,
        segments.external_customer_id,
        segments.aggregation_type,
        segments.bucket_size,
        segments.is_priced_per_bucket,
        segments.segment_index,
        segments.segment_start,
        events.event_timestamp,
        events.quantity,
        events.value_text,
        events.group_value,
        {#- ingest_seq is unique (one per stored event version) and an event meets a line
            item once, so (timestamp, ingest_seq) orders a segment as (timestamp, ingest_seq,
            event_id) does, without sorting on the ids (19 s against 13 s at 10M events) #}
        row_number() over (
            partition by segments.line_item_key, segments.segment_index
            order by events.event_timestamp, events.ingest_seq
        ) as event_ordinal
    from segments
    inner join meter_events as events
        on segments.tenant_id = events.tenant_id
        and segments.environment_id = events.environment_id
        and segments.meter_id = events.meter_id
        and segments.external_customer_id = events.external_customer_id
        and events.event_timestamp >= segments.segment_start
        and events.event_timestamp < segments.segment_end
),

{#- Running sums and maxima, each only for the meters that use it. -#}
running as (
    select
        line_item_key, segment_index, event_ordinal, tenant_id, environment_id, price_id,
        aggregation_type, is_priced_per_bucket, event_timestamp, quantity,
        sum(quantity) over ({{ segment_so_far }}) as running_sum,
        cast(null as {{ mh_quantity_type() }}) as running_max,
        sum(case when aggregation_type = 'WEIGHTED_SUM' then quantity * (
            {{ mh_epoch_us('event_timestamp') }} - {{ mh_epoch_us('segment_start') }}
        ) end) over ({{ segment_so_far }}) as running_moment_us
    from numbered
    where aggregation_type in ('SUM', 'SUM_WITH_MULTIPLIER', 'AVG', 'WEIGHTED_SUM')

    union all

    select
        line_item_key, segment_index, event_ordinal, tenant_id, environment_id, price_id,
        aggregation_type, is_priced_per_bucket, event_timestamp, quantity,
        cast(null as {{ mh_quantity_type() }}) as running_sum,
        max(quantity) over ({{ segment_so_far }}) as running_max,
        cast(null as {{ mh_quantity_type() }}) as running_moment_us
    from numbered
    where aggregation_type = 'MAX' and not is_priced_per_bucket

    union all

    select
        line_item_key, segment_index, event_ordinal, tenant_id, environment_id, price_id,
        aggregation_type, is_priced_per_bucket, event_timestamp, quantity,
        cast(null as {{ mh_quantity_type() }}) as running_sum,
        cast(null as {{ mh_quantity_type() }}) as running_max,
        cast(null as {{ mh_quantity_type() }}) as running_moment_us
    from numbered
    where aggregation_type not in ('SUM', 'SUM_WITH_MULTIPLIER', 'AVG', 'WEIGHTED_SUM', 'MAX')
        or (aggregation_type = 'MAX' and is_priced_per_bucket)
),

{#- COUNT_UNIQUE: a value counts from its first event in the segment. -#}
distinct_values as (
    select
        line_item_key,
        segment_index,
        event_ordinal,
        sum(is_first_of_value) over ({{ segment_so_far }}) as running_distinct
    from (
        select
            line_item_key,
            segment_index,
            event_ordinal,
            case when row_number() over (
                partition by line_item_key, segment_index, value_text order by event_ordinal
            ) = 1 then 1 else 0 end as is_first_of_value
        from numbered
        where aggregation_type = 'COUNT_UNIQUE'
    ) as firsts
),

{#- Bucketed MAX: the meter bucket of each event in the customer's calendar (as in
    fct_meter_usage: the customer's timezone, MONTH at the customer's anchor). -#}
in_meter_buckets as (
    select
        events.line_item_key,
        events.segment_index,
        events.event_ordinal,
        events.group_value,
        calendar.bucket_start as meter_bucket_start,
        max(events.quantity) over (
            partition by events.line_item_key, events.segment_index, calendar.bucket_start,
                events.group_value
            order by events.event_ordinal
            rows between unbounded preceding and current row
        ) as bucket_group_max
    from numbered as events
    left join customer_calendars
        on events.tenant_id = customer_calendars.tenant_id
        and events.environment_id = customer_calendars.environment_id
        and events.external_customer_id = customer_calendars.external_customer_id
    inner join calendar
        on calendar.timezone = coalesce(customer_calendars.timezone, 'UTC')
        and calendar.window_size = events.bucket_size
        and calendar.anchor_key = case when events.bucket_size = 'MONTH'
            then coalesce(customer_calendars.month_anchor_key, '') else '' end
        and calendar.hour_start = {{ mh_trunc_hour('events.event_timestamp') }}
        and events.event_timestamp >= calendar.bucket_start
        and events.event_timestamp < calendar.bucket_end
    where events.is_priced_per_bucket
),

{#- Σ over (bucket, group) of the max so far: each event adds how much it raised its max. -#}
bucket_maxima as (
    select
        *,
        sum(bucket_group_max - coalesce(previous_bucket_group_max, 0))
            over ({{ segment_so_far }}) as running_bucketed_quantity
    from (
        select
            *,
            lag(bucket_group_max) over (
                partition by line_item_key, segment_index, meter_bucket_start, group_value
                order by event_ordinal
            ) as previous_bucket_group_max
        from in_meter_buckets
    ) as with_previous
),

final as (
    select
        running.line_item_key,
        running.segment_index,
        running.event_ordinal,
        running.tenant_id,
        running.environment_id,
        running.price_id,
        running.aggregation_type,
        running.is_priced_per_bucket,
        running.event_timestamp,
        running.quantity,
        cast(running.running_sum as {{ mh_quantity_type() }}) as running_sum,
        cast(running.running_max as {{ mh_quantity_type() }}) as running_max,
        cast(distinct_values.running_distinct as bigint) as running_distinct,
        cast(running.running_moment_us as {{ mh_quantity_type() }}) as running_moment_us,
        bucket_maxima.meter_bucket_start,
        bucket_maxima.group_value,
        cast(bucket_maxima.bucket_group_max as {{ mh_quantity_type() }}) as bucket_group_max,
        cast(bucket_maxima.previous_bucket_group_max as {{ mh_quantity_type() }})
            as previous_bucket_group_max,
        cast(bucket_maxima.running_bucketed_quantity as {{ mh_quantity_type() }})
            as running_bucketed_quantity
    from running
    left join distinct_values
        on running.line_item_key = distinct_values.line_item_key
        and running.segment_index = distinct_values.segment_index
        and running.event_ordinal = distinct_values.event_ordinal
    left join bucket_maxima
        on running.line_item_key = bucket_maxima.line_item_key
        and running.segment_index = bucket_maxima.segment_index
        and running.event_ordinal = bucket_maxima.event_ordinal
)

select * from final
