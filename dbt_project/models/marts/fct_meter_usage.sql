{#- The statements that follow the model's (see below): each larger window size of the rollup
    path, then the minute path one aggregation type and a few window sizes at a time. -#}
{%- set minute_path_statements = [
    ['MINUTE', '15MIN', '30MIN'], ['HOUR', '3HOUR', '6HOUR'], ['12HOUR', 'DAY', 'WEEK', 'MONTH']] -%}
{#- On DuckDB each statement commits (transaction: false): rows a transaction has written stay
    in memory until it commits, and the whole table does not fit the memory limit at 10 million
    events. A build that fails or dies in between leaves the table to the next run, which deletes
    and rewrites the same scope (docs/ARCHITECTURE.md, "Incremental builds"), and DuckDB's
    readers use serving snapshots, published after a successful build. Postgres readers see the
    tables, so there the hooks run in the model's transaction. -#}
{%- set in_transaction = target.type != 'duckdb' -%}
{%- set post_hooks = [] -%}
{%- if target.type != 'spark' and not var('mh_single_statement', false) -%}
{%- for size in ['15MIN', '30MIN', 'HOUR', '3HOUR', '6HOUR', '12HOUR', 'DAY', 'WEEK', 'MONTH'] -%}
{%- do post_hooks.append({'sql': "{{ mh_rollup_insert('" ~ size ~ "') }}",
    'transaction': in_transaction}) -%}
{%- endfor -%}
{%- for aggregation_type in ['COUNT_UNIQUE', 'MAX', 'WEIGHTED_SUM'] -%}
{%- for sizes in minute_path_statements -%}
{%- do post_hooks.append({'sql': "{{ mh_minute_path_insert(" ~ sizes | tojson ~ ", ['"
    ~ aggregation_type ~ "']) }}", 'transaction': in_transaction}) -%}
{%- endfor -%}
{%- endfor -%}
{%- endif -%}
{{ config(
    materialized=mh_incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ mh_delete_changed(['window', 'meter'], "
        ~ "\"target.aggregation_type = 'WEIGHTED_SUM' and \" ~ mh_changed('customer', 'target')) }}",
    post_hook=post_hooks,
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

  Minute path (COUNT_UNIQUE, WEIGHTED_SUM, MAX with bucket_size; macros/windows/minute_path.sql):
  distinct values, levels and per-bucket maxima need the minutes, so every window is computed
  from its minute states, in post-hooks a few sizes at a time: each minute fans out to a row per
  window size, and all sizes at once do not fit the memory limit at 10 million events.
-#}
{%- set rollup_sizes = [
    ('15MIN', 'MINUTE'), ('30MIN', '15MIN'), ('HOUR', '30MIN'), ('3HOUR', 'HOUR'),
    ('6HOUR', '3HOUR'), ('12HOUR', '6HOUR'), ('DAY', '12HOUR'), ('WEEK', 'DAY')] -%}
{#- Spark rebuilds this table in full every run (Parquet cannot delete), inlines CTEs and
    runs no hooks: there every size merges the MINUTE states, and the minute path computes every
    size, in this one statement (so does the unit test, with var mh_single_statement). -#}
{%- set chained = target.type != 'spark' and not var('mh_single_statement', false) -%}

with
{{ mh_usage_base_ctes() }},

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


rollup_minute_members as {{ mh_not_materialized() }} (
    select
        {% for key in series_keys.split(', ') %}minutes.{{ key }}, {% endfor %}
        minutes.timezone, minutes.month_anchor_key,
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
),

{{ mh_rollup_level('MINUTE', 'rollup_minute_members', series_keys, 'rollup_minutes') }},


{#- Spark: every larger size from the MINUTE states, in this statement. -#}
{%- for size in ([] if chained else rollup_sizes | map('first') | list + ['MONTH']) %}
{%- set level = 'rollup_' ~ size | lower %}

{{ level }}_members as {{ mh_not_materialized() }} (
    select
        {% for key in series_keys.split(', ') %}children.{{ key }}, {% endfor %}
        children.timezone, children.month_anchor_key,
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

{{ mh_rollup_level(size, level ~ '_members', series_keys, 'rollup_minute') }},
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
        {{ series_keys }}, window_size, window_start, window_end, timezone, aggregation_type,
        {{ mh_rollup_value_columns() }}
    from rollup_windows
),

{%- if not chained %}

{{ mh_minute_path_ctes(['MINUTE', '15MIN', '30MIN', 'HOUR', '3HOUR', '6HOUR', '12HOUR', 'DAY',
    'WEEK', 'MONTH'], mh_incremental_batch()) }},
{%- endif %}

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
        {%- if not chained %}
        union all
        select * from minute_valued
        {%- endif %}
    ) as windows
    where contributing_events > 0
)

select * from final
