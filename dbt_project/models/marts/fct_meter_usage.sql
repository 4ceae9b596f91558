{#- Each larger window size of the rollup path is one statement after the model's (see below). -#}
{%- set rollup_hooks = [] -%}
{%- if target.type != 'spark' -%}
{%- for size in ['15MIN', '30MIN', 'HOUR', '3HOUR', '6HOUR', '12HOUR', 'DAY', 'WEEK', 'MONTH'] -%}
{%- do rollup_hooks.append("{{ mh_rollup_insert('" ~ size ~ "') }}") -%}
{%- endfor -%}
{%- endif -%}
{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['window', 'meter'], "
        ~ "\"target.aggregation_type = 'WEIGHTED_SUM' and \" ~ mh_changed('customer', 'target')) }}",
    post_hook=rollup_hooks,
)}}
/* depends on {{ ref('int_event_changes') }} */
/* depends on {{ ref('int_changed_meters') }} */
/* depends on {{ ref('int_changed_windows') }} */
{#-
  meter_usage: the value of every window of every size, in each customer's calendar
  (customer timezone; MONTH at the customer's billing anchor, calendar months without one).
  Grain: tenant × environment × meter × customer × window_size × window_start.
  Only windows with contributing events are emitted (DESIGN 3).
-#}
{%- set window_keys = 'tenant_id, environment_id, meter_id, external_customer_id, '
    ~ 'window_size, window_start' -%}
{%- set series_keys = 'tenant_id, environment_id, meter_id, external_customer_id' -%}
{#-
  Two paths.

  Rollup path (COUNT, SUM, SUM_WITH_MULTIPLIER, AVG, LATEST, MAX without bucket_size): the
  states of a window are merged from the states of the next smaller window size, whose
  buckets nest in it (DESIGN 3b.1: sub-day buckets truncate the wall clock to divisors of
  each other; DAY starts at local midnight, WEEK on Monday's). MONTH starts at the anchor's
  day and time, so it merges the windows of the largest size aligned with that time
  (mh_month_rollup_source). Each window is found by the calendar bucket holding the first
  minute of its child. This statement writes the MINUTE windows; then one statement per size
  (post-hooks, mh_rollup_insert, in the same transaction) merges the rows of the next smaller
  size already in the table, so no size is held in memory while the next is computed. A
  batch run recomputes a changed window from its recomputed children and the stored,
  unchanged ones (this table's state_* columns), not from its minutes.

  Minute path (COUNT_UNIQUE, WEIGHTED_SUM, MAX with bucket_size): distinct values, levels and
  per-bucket maxima need the minutes, so every window is computed from its minute states.
-#}
{%- set rollup_sizes = [
    ('15MIN', 'MINUTE'), ('30MIN', '15MIN'), ('HOUR', '30MIN'), ('3HOUR', 'HOUR'),
    ('6HOUR', '3HOUR'), ('12HOUR', '6HOUR'), ('DAY', '12HOUR'), ('WEEK', 'DAY')] -%}
{#- Spark rebuilds this table in full every run (Parquet cannot delete) and inlines CTEs:
    there every size merges the MINUTE states in this one statement. -#}
{%- set chained = target.type != 'spark' -%}
{%- set rollup_types = "'COUNT', 'SUM', 'SUM_WITH_MULTIPLIER', 'AVG', 'LATEST', 'MAX'" -%}

with meters as (
    select
        *,
        aggregation_type in ({{ rollup_types }})
            and not (aggregation_type = 'MAX' and bucket_size is not null) as rolls_up
    from {{ ref('stg_meters') }}
),

customer_calendars as (
    select * from {{ ref('stg_customer_usage_calendars') }}
),

calendar as (
    select * from {{ ref('stg_calendar_buckets') }}
),

billing_periods as (
    select * from {{ ref('stg_customer_billing_periods') }}
),

{#- Rollup path, MINUTE: the states of each minute, the meter's groups merged. -#}
rollup_minutes as {{ mh_not_materialized() }} (
    select
        minutely.*,
        coalesce(calendars.timezone, 'UTC') as timezone,
        coalesce(calendars.month_anchor_key, '') as month_anchor_key,
        coalesce(calendars.month_source, 'DAY') as month_source
    from {{ ref('fct_meter_usage_minutely') }} as minutely
    inner join meters
        on minutely.tenant_id = meters.tenant_id
        and minutely.environment_id = meters.environment_id
        and minutely.meter_id = meters.meter_id
        and meters.rolls_up
    left join customer_calendars as calendars
        on minutely.tenant_id = calendars.tenant_id
        and minutely.environment_id = calendars.environment_id
        and minutely.external_customer_id = calendars.external_customer_id
    {#- only minutes that contribute: the stored windows a batch run merges are those with
        contributing events (a SUM minute without values adds nothing anyway) #}
    where (minutely.aggregation_type = 'COUNT' or minutely.value_count > 0)
    {%- if mh_incremental_batch() %}
        and ({{ mh_changed('minute', 'minutely') }} or {{ mh_changed('meter', 'minutely') }})
    {%- endif %}
),


{#- A number per (tenant, environment, meter, customer): the levels group by it, not by four
    strings. -#}
series as (
    select
        {{ series_keys }},
        row_number() over (order by {{ series_keys }}) as series_id
    from (
        select distinct {{ series_keys }} from rollup_minutes
    ) as keys
),


rollup_minute_members as {{ mh_not_materialized() }} (
    select
        series.series_id, minutes.timezone, minutes.month_anchor_key,
        minutes.month_source, minutes.aggregation_type,
        minute_start as parent_start,
        {{ mh_add_minute('minute_start') }} as parent_end,
        event_count as state_events,
        value_count as state_values,
        value_sum as state_sum,
        value_max as state_max,
        minute_start as state_first_minute,
        latest_timestamp as state_latest_timestamp,
        latest_ingest_seq as state_latest_ingest_seq,
        latest_event_id as state_latest_event_id,
        latest_value as state_latest_value
    from rollup_minutes as minutes
    inner join series
        on {{ mh_join_on(series_keys, 'minutes', 'series') }}
),

{{ mh_rollup_level('MINUTE', 'rollup_minute_members') }},


{#- Spark: every larger size from the MINUTE states, in this statement. -#}
{%- for size in ([] if chained else rollup_sizes | map('first') | list + ['MONTH']) %}
{%- set level = 'rollup_' ~ size | lower %}

{{ level }}_members as {{ mh_not_materialized() }} (
    select
        children.series_id, children.timezone, children.month_anchor_key,
        children.month_source, children.aggregation_type,
        calendar.bucket_start as parent_start,
        calendar.bucket_end as parent_end,
        children.state_events, children.state_values, children.state_sum, children.state_max,
        children.state_first_minute, children.state_latest_timestamp,
        children.state_latest_ingest_seq, children.state_latest_event_id,
        children.state_latest_value
    from rollup_minute as children
    inner join calendar
        on calendar.timezone = children.timezone
        and calendar.hour_start = {{ mh_trunc_hour('children.state_first_minute') }}
        and calendar.window_size = '{{ size }}'
        and calendar.anchor_key = {{ "children.month_anchor_key" if size == 'MONTH' else "''" }}
        and children.state_first_minute >= calendar.bucket_start
        and children.state_first_minute < calendar.bucket_end
),

{{ mh_rollup_level(size, level ~ '_members') }},
{%- endfor %}

rollup_windows as (
    select * from rollup_minute
    {%- if not chained %}
    {%- for size in rollup_sizes | map('first') | list + ['MONTH'] %}
    union all
    select * from rollup_{{ size | lower }}
    {%- endfor %}
    {%- endif %}
),

rollup_valued as (
    select
        {% for key in series_keys.split(', ') %}series.{{ key }}, {% endfor %}
        windows.window_size,
        windows.window_start,
        windows.window_end,
        windows.timezone,
        windows.aggregation_type,
        {{ mh_rollup_value_columns() }}
    from rollup_windows as windows
    inner join series
        on series.series_id = windows.series_id
),

{#- Minute path. -#}
{%- if mh_incremental_batch() %}
changed_spans as (
    select
        tenant_id,
        environment_id,
        external_customer_id,
        min(window_start) as span_start,
        max(window_end) as span_end
    from {{ ref('int_changed_windows') }}
    group by tenant_id, environment_id, external_customer_id
),

{%- endif %}

minutely as {{ mh_not_materialized() }} (
    select minutely.*
    from {{ ref('fct_meter_usage_minutely') }} as minutely
    inner join meters
        on minutely.tenant_id = meters.tenant_id
        and minutely.environment_id = meters.environment_id
        and minutely.meter_id = meters.meter_id
        and not meters.rolls_up
    {%- if mh_incremental_batch() %}
    where exists (
            select 1 from changed_spans as spans
            where spans.tenant_id = minutely.tenant_id
            and spans.environment_id = minutely.environment_id
            and spans.external_customer_id = minutely.external_customer_id
            and minutely.minute_start >= spans.span_start
            and minutely.minute_start < spans.span_end
        )
        or {{ mh_changed('meter', 'minutely') }}
        or (minutely.aggregation_type = 'WEIGHTED_SUM' and {{ mh_changed('customer', 'minutely') }})
    {%- endif %}
),

distinct_values as {{ mh_not_materialized() }} (
    select * from {{ ref('fct_meter_distinct_values_minutely') }}
),

minutes_with_calendar as {{ mh_not_materialized() }} (
    select
        minutely.*,
        meters.bucket_size,
        meters.reset_usage,
        coalesce(customer_calendars.timezone, 'UTC') as timezone,
        coalesce(customer_calendars.month_anchor_key, '') as month_anchor_key,
        {{ mh_trunc_hour('minutely.minute_start') }} as hour_start
    from minutely
    inner join meters
        on minutely.tenant_id = meters.tenant_id
        and minutely.environment_id = meters.environment_id
        and minutely.meter_id = meters.meter_id
    left join customer_calendars
        on minutely.tenant_id = customer_calendars.tenant_id
        and minutely.environment_id = customer_calendars.environment_id
        and minutely.external_customer_id = customer_calendars.external_customer_id
),

{#-
  The buckets of every window size that hold each (calendar, minute) with usage: the range
  join to the calendar runs once per distinct minute of a timezone and anchor, not once per
  (meter, customer, group) row; the rows then find their buckets by equality.
-#}
calendar_minutes as (
    select distinct timezone, month_anchor_key, hour_start, minute_start
    from minutes_with_calendar
),

minute_buckets as (
    select
        minutes.timezone,
        minutes.month_anchor_key,
        minutes.minute_start,
        calendar.window_size,
        calendar.bucket_start,
        calendar.bucket_end
    from calendar_minutes as minutes
    inner join calendar
        on {{ mh_minute_in_bucket('minutes', 'calendar') }}
),

{#- MAX with bucket_size: the meter's own bucket of each minute, in the customer's calendar. -#}
minutes_in_meter_buckets as {{ mh_not_materialized() }} (
    select
        minutes.*,
        buckets.bucket_start as meter_bucket_start
    from minutes_with_calendar as minutes
    inner join minute_buckets as buckets
        on buckets.timezone = minutes.timezone
        and buckets.month_anchor_key = minutes.month_anchor_key
        and buckets.minute_start = minutes.minute_start
        and buckets.window_size = minutes.bucket_size
    where minutes.bucket_size is not null

    union all

    select
        minutes.*,
        cast(null as {{ mh_timestamptz() }}) as meter_bucket_start
    from minutes_with_calendar as minutes
    where minutes.bucket_size is null
),

minutes_in_all_windows as {{ mh_not_materialized() }} (
    select
        minutes.*,
        'MINUTE' as window_size,
        minutes.minute_start as window_start,
        {{ mh_add_minute('minutes.minute_start') }} as window_end
    from minutes_in_meter_buckets as minutes

    union all

    select
        minutes.*,
        buckets.window_size,
        buckets.bucket_start as window_start,
        buckets.bucket_end as window_end
    from minutes_in_meter_buckets as minutes
    inner join minute_buckets as buckets
        on buckets.timezone = minutes.timezone
        and buckets.month_anchor_key = minutes.month_anchor_key
        and buckets.minute_start = minutes.minute_start
),

minutes_in_windows as {{ mh_not_materialized() }} (
    select * from minutes_in_all_windows as minutes
    {%- if mh_incremental_batch() %}
    where {{ mh_changed('window', 'minutes') }}
        or {{ mh_changed('meter', 'minutes') }}
        or minutes.aggregation_type = 'WEIGHTED_SUM'
    {%- endif %}
),

window_states as (
    select
        {{ window_keys }},
        max(window_end) as window_end,
        max(timezone) as timezone,
        max(aggregation_type) as aggregation_type,
        sum(event_count) as event_count,
        sum(value_count) as value_count,
        sum(text_count) as text_count,
        sum(value_sum) as value_sum,
        max(value_max) as value_max
    from minutes_in_windows
    group by {{ window_keys }}
),

bucket_group_maxima as (
    select {{ window_keys }}, meter_bucket_start, group_value, max(value_max) as bucket_max
    from minutes_in_windows
    where meter_bucket_start is not null
    group by {{ window_keys }}, meter_bucket_start, group_value
),

bucketed_max_values as (
    select {{ window_keys }}, sum(bucket_max) as bucketed_max
    from bucket_group_maxima
    group by {{ window_keys }}
),

distinct_counts as (
    select
        {% for key in window_keys.split(', ') %}windows.{{ key }}, {% endfor %}
        count(distinct distinct_values.value_text) as distinct_count
    from minutes_in_windows as windows
    inner join distinct_values
        on windows.tenant_id = distinct_values.tenant_id
        and windows.environment_id = distinct_values.environment_id
        and windows.meter_id = distinct_values.meter_id
        and windows.external_customer_id = distinct_values.external_customer_id
        and windows.minute_start = distinct_values.minute_start
    where windows.aggregation_type = 'COUNT_UNIQUE'
    group by {% for key in window_keys.split(', ') %}windows.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
),

{#-
  WEIGHTED_SUM: each window is cut into pieces by the reset periods; the level at a piece's
  start is the sum of the earlier deltas of its period (all of them lie in earlier pieces of
  windows with events), and the integral over a piece adds each delta × the time it is held.
-#}
weighted_windows as (
    select distinct
        tenant_id, environment_id, meter_id, external_customer_id, window_size, window_start,
        window_end, reset_usage
    from minutes_in_windows
    where aggregation_type = 'WEIGHTED_SUM'
),

reset_periods as (
    select
        tenant_id, environment_id, external_customer_id, period_start, period_end,
        'BILLING_PERIOD' as reset_usage
    from billing_periods

    union all

    select distinct
        tenant_id, environment_id, external_customer_id,
        cast('1970-01-01 00:00:00+00' as {{ mh_timestamptz() }}) as period_start,
        cast('2200-01-01 00:00:00+00' as {{ mh_timestamptz() }}) as period_end,
        'NEVER' as reset_usage
    from weighted_windows
),

weighted_pieces as (
    select
        windows.*,
        periods.period_start,
        case when periods.period_start > windows.window_start
            then periods.period_start else windows.window_start end as piece_start,
        case when periods.period_end < windows.window_end
            then periods.period_end else windows.window_end end as piece_end
    from weighted_windows as windows
    inner join reset_periods as periods
        on windows.tenant_id = periods.tenant_id
        and windows.environment_id = periods.environment_id
        and windows.external_customer_id = periods.external_customer_id
        and windows.reset_usage = periods.reset_usage
        and periods.period_start < windows.window_end
        and periods.period_end > windows.window_start
),

piece_moments as (
    select
        {% for key in window_keys.split(', ') %}pieces.{{ key }}, {% endfor %}
        pieces.window_end,
        pieces.period_start,
        pieces.piece_start,
        pieces.piece_end,
        coalesce(sum(minutes.value_sum), 0) as piece_delta,
        coalesce(sum(
            minutes.value_sum
                * ({{ mh_epoch_us('pieces.piece_end') }} - {{ mh_epoch_us('minutes.minute_start') }})
            - minutes.weighted_moment_us
        ), 0) as piece_inner_integral_us
    from weighted_pieces as pieces
    left join minutes_in_windows as minutes
        on pieces.tenant_id = minutes.tenant_id
        and pieces.environment_id = minutes.environment_id
        and pieces.meter_id = minutes.meter_id
        and pieces.external_customer_id = minutes.external_customer_id
        and pieces.window_size = minutes.window_size
        and pieces.window_start = minutes.window_start
        and minutes.value_sum is not null
        and minutes.minute_start >= pieces.piece_start
        and minutes.minute_start < pieces.piece_end
    group by
        {% for key in window_keys.split(', ') %}pieces.{{ key }}, {% endfor %}
        pieces.window_end, pieces.period_start, pieces.piece_start, pieces.piece_end
),

pieces_with_level as (
    select
        *,
        coalesce(sum(piece_delta) over (
            partition by tenant_id, environment_id, meter_id, external_customer_id,
                window_size, period_start
            order by piece_start
            rows between unbounded preceding and 1 preceding
        ), 0) as level_at_piece_start
    from piece_moments
),

weighted_values as (
    select
        {{ window_keys }},
        {{ mh_divide(
            'sum(level_at_piece_start * (' ~ mh_epoch_us('piece_end') ~ ' - '
                ~ mh_epoch_us('piece_start') ~ ') + piece_inner_integral_us)',
            'max(' ~ mh_epoch_us('window_end') ~ ' - ' ~ mh_epoch_us('window_start') ~ ')'
        ) }} as weighted_value
    from pieces_with_level
    group by {{ window_keys }}
),

{#- (the minute path holds only bucketed MAX, COUNT_UNIQUE and WEIGHTED_SUM) -#}
valued as (
    select
        states.*,
        case states.aggregation_type
            when 'MAX' then cast(bucketed.bucketed_max as {{ mh_value_type() }})
            when 'COUNT_UNIQUE' then cast(distinct_counts.distinct_count as {{ mh_value_type() }})
            when 'WEIGHTED_SUM' then weighted.weighted_value
        end as value,
        case states.aggregation_type
            when 'COUNT_UNIQUE' then states.text_count
            else states.value_count
        end as contributing_events
    from window_states as states
    left join bucketed_max_values as bucketed on {{ mh_join_on(window_keys, 'states', 'bucketed') }}
    left join distinct_counts on {{ mh_join_on(window_keys, 'states', 'distinct_counts') }}
    left join weighted_values as weighted on {{ mh_join_on(window_keys, 'states', 'weighted') }}
),

minute_valued as (
    select
        {{ window_keys }},
        window_end,
        timezone,
        aggregation_type,
        value,
        contributing_events,
        cast(null as bigint) as state_events,
        cast(null as bigint) as state_values,
        cast(null as {{ mh_quantity_type() }}) as state_sum,
        cast(null as {{ mh_quantity_type() }}) as state_max,
        cast(null as {{ mh_timestamptz() }}) as state_first_minute,
        cast(null as {{ mh_timestamptz() }}) as state_latest_timestamp,
        cast(null as bigint) as state_latest_ingest_seq,
        cast(null as {{ mh_text_type() }}) as state_latest_event_id,
        cast(null as {{ mh_quantity_type() }}) as state_latest_value
    from valued
),

final as (
    select
        tenant_id,
        environment_id,
        meter_id,
        external_customer_id,
        window_size,
        window_start,
        window_end,
        timezone,
        aggregation_type,
        value,
        cast(contributing_events as bigint) as event_count,
        cast(state_events as bigint) as state_events,
        cast(state_values as bigint) as state_values,
        cast(state_sum as {{ mh_quantity_type() }}) as state_sum,
        cast(state_max as {{ mh_quantity_type() }}) as state_max,
        state_first_minute,
        state_latest_timestamp,
        cast(state_latest_ingest_seq as bigint) as state_latest_ingest_seq,
        state_latest_event_id,
        cast(state_latest_value as {{ mh_quantity_type() }}) as state_latest_value
    from (
        select * from rollup_valued
        union all
        select * from minute_valued
    ) as windows
    where contributing_events > 0
)

select * from final
