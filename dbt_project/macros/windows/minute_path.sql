{#-
  The minute path of fct_meter_usage (COUNT_UNIQUE, WEIGHTED_SUM, MAX with bucket_size):
  distinct values, levels and per-bucket maxima need the minutes, so every window is computed
  from its minute states. `minute_path_ctes(sizes, batch)` renders the CTEs whose last,
  `minute_valued`, holds the windows of the listed sizes in fct_meter_usage's columns; they
  need the CTEs of `mh_usage_base_ctes()`. `batch`: only the changed scope of a batch run.
-#}

{#- The catalog CTEs both paths read. -#}
{% macro mh_usage_base_ctes() -%}
{%- set rollup_types = "'COUNT', 'SUM', 'SUM_WITH_MULTIPLIER', 'AVG', 'LATEST', 'MAX'" -%}
meters as (
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
)
{%- endmacro %}

{% macro mh_minute_path_ctes(sizes, batch, types=['COUNT_UNIQUE', 'MAX', 'WEIGHTED_SUM']) -%}
{%- set window_keys = 'tenant_id, environment_id, meter_id, external_customer_id, '
    ~ 'window_size, window_start' -%}
{%- set larger = [] -%}
{%- for size in sizes if size != 'MINUTE' -%}{%- do larger.append("'" ~ size ~ "'") -%}{%- endfor -%}
{%- set larger_sizes = larger | join(', ') or "''" -%}
{%- if batch %}
{#-
  The UTC hours a batch run reads minutes of: every hour that overlaps a changed window of a
  size computed here (sizes do not all nest: a WEEK reaches into the next MONTH). Minutes of
  those hours outside a changed window are read too, and their windows dropped below
  (minutes_in_windows keeps changed windows only), so no window is computed from part of its
  minutes. An equality join, where a range per customer (earliest to latest change) read a
  whole month of minutes for a late event and a new one.
-#}
changed_hours as (
    select distinct
        tenant_id, environment_id, external_customer_id,
        {{ mh_trunc_hour('window_start') }} as hour_start
    from {{ ref('int_changed_windows') }}
    where window_size = 'MINUTE'

    union

    select tenant_id, environment_id, external_customer_id, hour_start
    from ({{ mh_changed_window_hours(sizes | reject('equalto', 'MINUTE') | list) }}) as hours
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
        and meters.aggregation_type in ('{{ types | join("', '") }}')
    {%- if batch %}
    {#- a join on the hour, not a range test under an `or` (which Postgres may run once per
        minute row) #}
    left join changed_hours as hours
        on hours.tenant_id = minutely.tenant_id
        and hours.environment_id = minutely.environment_id
        and hours.external_customer_id = minutely.external_customer_id
        and hours.hour_start = {{ mh_trunc_hour('minutely.minute_start') }}
    where hours.hour_start is not null
        or {{ mh_changed('meter', 'minutely') }}
        or {{ mh_changed('weighted_customer', 'minutely') }}
    {%- endif %}
),

distinct_values as {{ mh_not_materialized() }} (
    select * from {{ ref('fct_meter_distinct_values_minutely') }}
),

{#- A batch run's minutes are few: computed once for the several readers below (inlined, they
    were scanned and joined six times: one statement of a 10M batch run took 5.9 s, not 1.9 s).
    A full build inlines them: they do not fit in memory. -#}
minutes_with_calendar as {{ mh_materialized() if batch else mh_not_materialized() }} (
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

{#- only the sizes this statement computes, and the meters' bucket sizes for bucketed MAX -#}
{%- set needed_sizes = larger + (["'HOUR'", "'DAY'", "'MONTH'"] if 'MAX' in types else []) %}
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
        and calendar.window_size in ({{ needed_sizes | unique | join(', ') or "''" }})
),

{#- MAX with bucket_size: the meter's own bucket of each minute, in the customer's calendar. -#}
minutes_in_meter_buckets as {{ mh_not_materialized() }} (
    {%- if 'MAX' in types %}
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
    {%- endif %}

    select
        minutes.*,
        cast(null as {{ mh_timestamptz() }}) as meter_bucket_start
    from minutes_with_calendar as minutes
    where minutes.bucket_size is null
),

minutes_in_all_windows as {{ mh_not_materialized() }} (
    {%- if 'MINUTE' in sizes %}
    select
        minutes.*,
        'MINUTE' as window_size,
        minutes.minute_start as window_start,
        {{ mh_add_minute('minutes.minute_start') }} as window_end
    from minutes_in_meter_buckets as minutes

    union all
    {%- endif %}

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
        and buckets.window_size in ({{ larger_sizes }})
),

minutes_in_windows as {{ mh_not_materialized() }} (
    select * from minutes_in_all_windows as minutes
    {%- if batch %}
    {#- predicates (`in`), not left joins: a window's minutes are many, and DuckDB built a
        left join's hash table from them rather than from the changed windows (out of memory
        at 10M) #}
    where {{ mh_changed('window', 'minutes') }}
        or {{ mh_changed('meter', 'minutes') }}
        or minutes.aggregation_type = 'WEIGHTED_SUM'
    {%- endif %}
),

{%- if 'MAX' in types %}

bucket_group_maxima as (
    select {{ window_keys }}, meter_bucket_start, group_value, max(value_max) as bucket_max
    from minutes_in_windows
    where aggregation_type = 'MAX' and meter_bucket_start is not null
    group by {{ window_keys }}, meter_bucket_start, group_value
),

{%- endif %}
{%- if 'COUNT_UNIQUE' in types %}

{#- COUNT_UNIQUE: each distinct value of a window once (a grouping, which DuckDB spills to disk
    under its memory limit; a count(distinct) is held in memory). -#}
window_distinct_values as (
    select
        {% for key in window_keys.split(', ') %}windows.{{ key }}, {% endfor %}
        distinct_values.value_text
    from minutes_in_windows as windows
    inner join distinct_values
        on windows.tenant_id = distinct_values.tenant_id
        and windows.environment_id = distinct_values.environment_id
        and windows.meter_id = distinct_values.meter_id
        and windows.external_customer_id = distinct_values.external_customer_id
        and windows.minute_start = distinct_values.minute_start
    where windows.aggregation_type = 'COUNT_UNIQUE'
    group by {% for key in window_keys.split(', ') %}windows.{{ key }}, {% endfor %}distinct_values.value_text
),

{%- endif %}
{%- if 'WEIGHTED_SUM' in types %}

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
        on minutes.aggregation_type = 'WEIGHTED_SUM'
        and pieces.tenant_id = minutes.tenant_id
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

{%- endif %}

{#-
  Every window's parts (its minutes' counts, its buckets' maxima, its distinct values, its
  weighted value) merged by one grouping rather than joined: a join holds its build side in
  memory, a grouping spills. The minute path holds only bucketed MAX, COUNT_UNIQUE and
  WEIGHTED_SUM.
-#}
window_parts as {{ mh_not_materialized() }} (
    select
        {{ window_keys }}, window_end, timezone, aggregation_type, event_count, value_count,
        text_count,
        cast(null as {{ mh_quantity_type() }}) as bucket_max,
        cast(null as bigint) as distinct_value,
        cast(null as {{ mh_value_type() }}) as weighted_value
    from minutes_in_windows
    {%- for aggregation_type, part, expression, source in [
        ('MAX', 'bucket_max', 'bucket_max', 'bucket_group_maxima'),
        ('COUNT_UNIQUE', 'distinct_value', 'cast(1 as bigint)', 'window_distinct_values'),
        ('WEIGHTED_SUM', 'weighted_value', 'weighted_value', 'weighted_values')]
        if aggregation_type in types %}

    union all

    select
        {{ window_keys }},
        cast(null as {{ mh_timestamptz() }}) as window_end,
        cast(null as {{ mh_text_type() }}) as timezone,
        cast(null as {{ mh_text_type() }}) as aggregation_type,
        cast(null as bigint) as event_count,
        cast(null as bigint) as value_count,
        cast(null as bigint) as text_count,
        {%- for column, type in [('bucket_max', mh_quantity_type()), ('distinct_value', 'bigint'),
                                 ('weighted_value', mh_value_type())] %}
        {{ expression if column == part else 'cast(null as ' ~ type ~ ')' }} as {{ column }}
            {{- ',' if not loop.last }}
        {%- endfor %}
    from {{ source }}
    {%- endfor %}
),

valued as (
    select
        {{ window_keys }},
        max(window_end) as window_end,
        max(timezone) as timezone,
        max(aggregation_type) as aggregation_type,
        case max(aggregation_type)
            when 'MAX' then cast(sum(bucket_max) as {{ mh_value_type() }})
            when 'COUNT_UNIQUE' then cast(sum(distinct_value) as {{ mh_value_type() }})
            when 'WEIGHTED_SUM' then max(weighted_value)
        end as value,
        case max(aggregation_type)
            when 'COUNT_UNIQUE' then sum(text_count)
            else sum(value_count)
        end as contributing_events
    from window_parts
    group by {{ window_keys }}
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
)
{%- endmacro %}

{#-
  Post-hook of fct_meter_usage: insert the minute-path windows of `sizes` of the meters of
  `types` (a statement per type and few sizes, so that the minutes' fan-out to every window
  size is never held at once).
-#}
{% macro mh_minute_path_insert(sizes, types) -%}
insert into {{ this }} (
    tenant_id, environment_id, meter_id, external_customer_id, window_size, window_start,
    window_end, timezone, aggregation_type, value, event_count, state_events, state_values,
    state_sum, state_max, state_first_minute, state_latest_timestamp, state_latest_ingest_seq,
    state_latest_event_id, state_latest_value
)
with
{{ mh_usage_base_ctes() }},

{{ mh_minute_path_ctes(sizes, mh_batch_run(), types) }}

select
    tenant_id, environment_id, meter_id, external_customer_id, window_size, window_start,
    window_end, timezone, aggregation_type, value, cast(contributing_events as bigint),
    state_events, state_values, state_sum, state_max, state_first_minute,
    state_latest_timestamp, state_latest_ingest_seq, state_latest_event_id, state_latest_value
from minute_valued
where contributing_events > 0
{%- endmacro %}
