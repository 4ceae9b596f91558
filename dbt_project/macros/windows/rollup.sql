{#-
  The rollup path of fct_meter_usage: merging the states of nested windows.
-#}

{#-
  The window size whose buckets a customer's MONTH windows are made of: MONTH starts at the
  anchor's local day and time ('DD HH:MM', '' for calendar months), so it is a union of DAY
  windows when that time is midnight, else of the largest sub-day size the time is a bucket
  start of (DESIGN 3b.1; a start in a DST gap moves to the transition, itself a bucket start of
  that size).
-#}
{% macro mh_month_rollup_source(anchor_key) -%}
    case
        when {{ anchor_key }} = '' or substr({{ anchor_key }}, 4, 5) = '00:00' then 'DAY'
        when substr({{ anchor_key }}, 7, 2) = '00' then
            case
                when cast(substr({{ anchor_key }}, 4, 2) as int) % 12 = 0 then '12HOUR'
                when cast(substr({{ anchor_key }}, 4, 2) as int) % 6 = 0 then '6HOUR'
                when cast(substr({{ anchor_key }}, 4, 2) as int) % 3 = 0 then '3HOUR'
                else 'HOUR'
            end
        when substr({{ anchor_key }}, 7, 2) = '30' then '30MIN'
        when substr({{ anchor_key }}, 7, 2) in ('15', '45') then '15MIN'
        else 'MINUTE'
    end
{%- endmacro %}

{#-
  The windows of `size` (CTE `rollup_<size>`) from `members`: child states with the start and
  end of the window holding them (parent_start, parent_end). Sums and maxima merge; LATEST
  keeps the child state with the latest (timestamp, ingestion, event id). `series_rows`: the
  members' rows before their windows were found (same series and calendar columns), which
  DuckDB reads to list the series.
-#}
{% macro mh_rollup_level(size, members, series, series_rows) -%}
    {{ return(adapter.dispatch('mh_rollup_level', 'meterhouse')(size, members, series, series_rows)) }}
{%- endmacro %}

{#- Postgres: LATEST by ranking the members (a CTE used twice is computed once there). -#}
{% macro default__mh_rollup_level(size, members, series, series_rows) -%}
rollup_{{ size | lower }} as (
    select
        {% for key in series.split(', ') %}states.{{ key }}, {% endfor %}
        '{{ size }}' as window_size,
        states.window_start,
        states.window_end,
        states.timezone,
        states.month_anchor_key,
        states.month_source,
        states.aggregation_type,
        states.state_events,
        states.state_values,
        states.state_sum,
        states.state_max,
        states.state_first_minute,
        latest.state_latest_timestamp,
        latest.state_latest_ingest_seq,
        latest.state_latest_event_id,
        latest.state_latest_value
    from (
        select
            {{ series }},
            parent_start as window_start,
            {{ mh_rollup_state_merge() }}
        from {{ members }}
        group by {{ series }}, parent_start
    ) as states
    left join (
        select
            {{ series }},
            parent_start,
            state_latest_timestamp,
            state_latest_ingest_seq,
            state_latest_event_id,
            state_latest_value
        from (
            select
                *,
                row_number() over (
                    partition by {{ series }}, parent_start
                    order by state_latest_timestamp desc, state_latest_ingest_seq desc,
                        state_latest_event_id desc
                ) as latest_rank
            from {{ members }}
            where aggregation_type = 'LATEST' and state_latest_value is not null
        ) as ranked
        where latest_rank = 1
    ) as latest
        on {{ mh_join_on(series, 'states', 'latest') }}
        and latest.parent_start = states.window_start
)
{%- endmacro %}


{#-
  DuckDB: the members are grouped by a 64-bit hash of their series and the window start, not
  by the four text keys, and the series' keys and calendar columns are joined back to the
  windows (a few thousand series). Grouping 17.8M MINUTE members by the text keys, with max()
  of the text columns, spilled 2.3 GB and took 22-32 s of the 15MIN statement at 10M events;
  by the hash, 12-13 s without spilling. Two series with one hash would merge, so the series
  list stops the statement when a hash repeats. LATEST as in mh_rollup_level_by_struct.
-#}
{% macro duckdb__mh_rollup_level(size, members, series, series_rows) -%}
{%- set series_hash = 'hash(' ~ series ~ ')' -%}
rollup_{{ size | lower }}_series as (
    select
        {{ series_hash }} as series_hash,
        {{ series }},
        max(timezone) as timezone,
        max(month_anchor_key) as month_anchor_key,
        max(month_source) as month_source,
        max(aggregation_type) as aggregation_type
    from {{ series_rows }}
    group by {{ series }}
    qualify case when count(*) over (partition by {{ series_hash }}) > 1
        then error('fct_meter_usage: two series share a 64-bit hash; windows would merge')
        else true end
),

rollup_{{ size | lower }} as (
    select
        {% for key in series.split(', ') %}series.{{ key }}, {% endfor %}
        '{{ size }}' as window_size,
        states.window_start,
        states.window_end,
        series.timezone,
        series.month_anchor_key,
        series.month_source,
        series.aggregation_type,
        states.state_events,
        states.state_values,
        states.state_sum,
        states.state_max,
        states.state_first_minute,
        states.latest_state.t as state_latest_timestamp,
        states.latest_state.s as state_latest_ingest_seq,
        states.latest_state.e as state_latest_event_id,
        states.latest_state.v as state_latest_value
    from (
        select
            {{ series_hash }} as series_hash,
            parent_start as window_start,
            {{ mh_rollup_states_merged() }},
            {{ mh_rollup_latest_state() }} as latest_state
        from {{ members }}
        group by {{ series_hash }}, parent_start
    ) as states
    inner join rollup_{{ size | lower }}_series as series
        on states.series_hash = series.series_hash
)
{%- endmacro %}

{#-
  Spark: LATEST as the largest (timestamp, ingestion, event id, value) struct, in the same
  aggregation, so the members are read once (Spark inlines CTEs: a level read twice would
  double the plan at every size; and its hash() has 32 bits).
-#}
{% macro spark__mh_rollup_level(size, members, series, series_rows) -%}
    {{ return(mh_rollup_level_by_struct(size, members, series)) }}
{%- endmacro %}

{% macro mh_rollup_level_by_struct(size, members, series) -%}
rollup_{{ size | lower }} as (
    select
        {{ series }},
        '{{ size }}' as window_size,
        window_start,
        window_end,
        timezone,
        month_anchor_key,
        month_source,
        aggregation_type,
        state_events,
        state_values,
        state_sum,
        state_max,
        state_first_minute,
        latest_state.t as state_latest_timestamp,
        latest_state.s as state_latest_ingest_seq,
        latest_state.e as state_latest_event_id,
        latest_state.v as state_latest_value
    from (
        select
            {{ series }},
            parent_start as window_start,
            {{ mh_rollup_state_merge() }},
            {{ mh_rollup_latest_state() }} as latest_state
        from {{ members }}
        group by {{ series }}, parent_start
    ) as states
)
{%- endmacro %}

{#- The latest LATEST state of the members: the largest (timestamp, ingestion, event id, value)
    struct (structs compare field by field). -#}
{% macro mh_rollup_latest_state() -%}
    max(case when aggregation_type = 'LATEST' and state_latest_value is not null then
                {{ mh_struct([('t', 'state_latest_timestamp'), ('s', 'state_latest_ingest_seq'),
                              ('e', 'state_latest_event_id'), ('v', 'state_latest_value')]) }}
            end)
{%- endmacro %}

{#- A struct literal of (name, expression) fields; structs compare field by field. -#}
{% macro mh_struct(fields) -%}
    {{ return(adapter.dispatch('mh_struct', 'meterhouse')(fields)) }}
{%- endmacro %}
{#- (only DuckDB and Spark merge LATEST by struct; dbt's parser renders every branch) -#}
{% macro default__mh_struct(fields) -%}
    row({%- for name, expression in fields %}{{ expression }}{{ ', ' if not loop.last }}{% endfor -%})
{%- endmacro %}
{% macro duckdb__mh_struct(fields) -%}
    { {%- for name, expression in fields %}'{{ name }}': {{ expression }}{{ ', ' if not loop.last }}{% endfor -%} }
{%- endmacro %}
{% macro spark__mh_struct(fields) -%}
    named_struct({%- for name, expression in fields %}'{{ name }}', {{ expression }}{{ ', ' if not loop.last }}{% endfor -%})
{%- endmacro %}

{#- The merge of the members' states into their window's (the customer's calendar columns are
    the same on every member of a window). -#}
{% macro mh_rollup_state_merge() -%}
        max(timezone) as timezone,
            max(month_anchor_key) as month_anchor_key,
            max(month_source) as month_source,
            max(aggregation_type) as aggregation_type,
            {{ mh_rollup_states_merged() }}
{%- endmacro %}

{#- The window's end and its merged sums, maxima and first minute (without LATEST). -#}
{% macro mh_rollup_states_merged() -%}
        max(parent_end) as window_end,
            sum(state_events) as state_events,
            sum(state_values) as state_values,
            sum(state_sum) as state_sum,
            max(state_max) as state_max,
            min(state_first_minute) as state_first_minute
{%- endmacro %}

{#- A rollup window's value and contributing events from its states. -#}
{% macro mh_rollup_value_columns() -%}
        case aggregation_type
            when 'COUNT' then cast(state_events as {{ mh_value_type() }})
            when 'SUM' then cast(state_sum as {{ mh_value_type() }})
            when 'SUM_WITH_MULTIPLIER' then cast(state_sum as {{ mh_value_type() }})
            when 'AVG' then {{ mh_divide('state_sum', 'state_values') }}
            when 'MAX' then cast(state_max as {{ mh_value_type() }})
            when 'LATEST' then cast(state_latest_value as {{ mh_value_type() }})
        end as value,
        case aggregation_type when 'COUNT' then state_events else state_values end
            as contributing_events,
        state_events, state_values, state_sum, state_max, state_first_minute,
        state_latest_timestamp, state_latest_ingest_seq, state_latest_event_id,
        state_latest_value
{%- endmacro %}

{#-
  Post-hook of fct_meter_usage (one per size, smallest first): insert the rollup windows of
  `size` merged from the rows of its child size already in the table (the next smaller size;
  for MONTH the customer's month_source). A full build merges every child; a batch run the
  children inside a changed window of `size` (recomputed by the earlier statements, or stored
  and unchanged) and every child of a changed meter: exactly the windows the pre-hook deleted.
-#}
{% macro mh_rollup_insert(size) -%}
{%- set child_size = {'15MIN': 'MINUTE', '30MIN': '15MIN', 'HOUR': '30MIN', '3HOUR': 'HOUR',
    '6HOUR': '3HOUR', '12HOUR': '6HOUR', 'DAY': '12HOUR', 'WEEK': 'DAY'} -%}
{%- set series = 'tenant_id, environment_id, meter_id, external_customer_id' -%}
insert into {{ this }} (
    tenant_id, environment_id, meter_id, external_customer_id, window_size, window_start,
    window_end, timezone, aggregation_type, value, event_count, state_events, state_values,
    state_sum, state_max, state_first_minute, state_latest_timestamp, state_latest_ingest_seq,
    state_latest_event_id, state_latest_value
)
{%- set in_changed_window -%}
                changed.tenant_id = children.tenant_id
                and changed.environment_id = children.environment_id
                and changed.external_customer_id = children.external_customer_id
                and changed.hour_start = {{ mh_trunc_hour('children.state_first_minute') }}
                and children.state_first_minute >= changed.window_start
                and children.state_first_minute < changed.window_end
{%- endset -%}
{#- A batch run reads the children inside a changed window, and every child of a changed
    meter outside them, in two branches:
    - inside: a join with the changed windows, listed once per UTC hour they overlap, so that
      a child finds its parent by equality on the hour of its first minute with events
      (calendar rows exist for the hours of the events). A child lies in one window of
      `size`, so the join repeats no child. As an `exists`, DuckDB decorrelated it into a
      grouping of every child of the size (8 s for the 15MIN windows of a 10M batch run); a
      range alone compared every child of a customer with each of its changed windows (17 s);
    - outside: a join with the changed meters and a `not exists` on the changed windows, which
      Postgres plans as an anti join (under an `or` it ran once per child row). With no
      changed meter it reads nothing. -#}
{%- set branches = ['inside', 'outside'] if mh_batch_run() else ['all'] -%}
with
{%- if mh_batch_run() %} changed_parent_hours as (
    {{ mh_changed_window_hours([size]) }}
),
{%- endif %}

children as {{ mh_not_materialized() }} (
    {%- for branch in branches %}
    select
        children.*,
        coalesce(calendars.month_anchor_key, '') as month_anchor_key,
        coalesce(calendars.month_source, 'DAY') as month_source
    from {{ this }} as children
    {%- if branch == 'inside' %}
    inner join changed_parent_hours as changed
        on {{ in_changed_window }}
        {%- if size == 'MONTH' %}
        and children.window_size = changed.month_source
        {%- endif %}
    {%- elif branch == 'outside' %}
    inner join {{ ref('int_changed_meters') }} as changed_meters
        on children.tenant_id = changed_meters.tenant_id
        and children.environment_id = changed_meters.environment_id
        and children.meter_id = changed_meters.meter_id
    {%- endif %}
    left join {{ ref('stg_customer_usage_calendars') }} as calendars
        on children.tenant_id = calendars.tenant_id
        and children.environment_id = calendars.environment_id
        and children.external_customer_id = calendars.external_customer_id
    where children.state_first_minute is not null
    {%- if size == 'MONTH' %}
        {#- only the customer's MONTH source size, filtered before the changed windows are
            matched (after the calendar join, every size's rows were: 7 s of a 1M batch) #}
        and children.window_size = coalesce(calendars.month_source, 'DAY')
    {%- else %}
        and children.window_size = '{{ child_size[size] }}'
    {%- endif %}
    {%- if branch == 'outside' %}
        and not exists (select 1 from changed_parent_hours as changed where {{ in_changed_window }})
    {%- endif %}
    {{- '\n\n    union all\n' if not loop.last }}
    {%- endfor %}
),

members as (
    select
        children.tenant_id, children.environment_id, children.meter_id,
        children.external_customer_id, children.timezone, children.month_anchor_key,
        children.month_source, children.aggregation_type,
        calendar.bucket_start as parent_start,
        calendar.bucket_end as parent_end,
        children.state_events, children.state_values, children.state_sum, children.state_max,
        children.state_first_minute, children.state_latest_timestamp,
        children.state_latest_ingest_seq, children.state_latest_event_id,
        children.state_latest_value
    from children
    inner join {{ ref('stg_calendar_buckets') }} as calendar
        on calendar.timezone = children.timezone
        and calendar.hour_start = {{ mh_trunc_hour('children.state_first_minute') }}
        and calendar.window_size = '{{ size }}'
        and calendar.anchor_key = {{ "children.month_anchor_key" if size == 'MONTH' else "''" }}
        and children.state_first_minute >= calendar.bucket_start
        and children.state_first_minute < calendar.bucket_end
),

{{ mh_rollup_level(size, 'members', series, 'children') }},

valued as (
    select
        {{ series }}, window_size, window_start, window_end, timezone, aggregation_type,
        {{ mh_rollup_value_columns() }}
    from rollup_{{ size | lower }}
)

select
    {{ series }}, window_size, window_start, window_end, timezone, aggregation_type, value,
    cast(contributing_events as bigint), cast(state_events as bigint),
    cast(state_values as bigint), cast(state_sum as {{ mh_quantity_type() }}),
    cast(state_max as {{ mh_quantity_type() }}), state_first_minute, state_latest_timestamp,
    cast(state_latest_ingest_seq as bigint), state_latest_event_id,
    cast(state_latest_value as {{ mh_quantity_type() }})
from valued
where contributing_events > 0
{%- endmacro %}
