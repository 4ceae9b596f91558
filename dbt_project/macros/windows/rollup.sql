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
  keeps the child state with the latest (timestamp, ingestion, event id).
-#}
{% macro mh_rollup_level(size, members) -%}
    {{ return(adapter.dispatch('mh_rollup_level', 'meterhouse')(size, members)) }}
{%- endmacro %}

{#- Postgres: LATEST by ranking the members (a CTE used twice is computed once there). -#}
{% macro default__mh_rollup_level(size, members) -%}
{%- set series = 'series_id' -%}
rollup_{{ size | lower }} as (
    select
        states.series_id,
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
  DuckDB and Spark: LATEST as the largest (timestamp, ingestion, event id, value) struct, in the
  same aggregation, so the members are read once (Spark inlines CTEs: a level read twice
  would double the plan at every size).
-#}
{% macro duckdb__mh_rollup_level(size, members) -%}
    {{ return(mh_rollup_level_by_struct(size, members)) }}
{%- endmacro %}
{% macro spark__mh_rollup_level(size, members) -%}
    {{ return(mh_rollup_level_by_struct(size, members)) }}
{%- endmacro %}

{% macro mh_rollup_level_by_struct(size, members) -%}
{%- set series = 'series_id' -%}
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
            max(case when aggregation_type = 'LATEST' and state_latest_value is not null then
                {{ mh_struct([('t', 'state_latest_timestamp'), ('s', 'state_latest_ingest_seq'),
                              ('e', 'state_latest_event_id'), ('v', 'state_latest_value')]) }}
            end) as latest_state
        from {{ members }}
        group by {{ series }}, parent_start
    ) as states
)
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
        max(parent_end) as window_end,
            max(timezone) as timezone,
            max(month_anchor_key) as month_anchor_key,
            max(month_source) as month_source,
            max(aggregation_type) as aggregation_type,
            sum(state_events) as state_events,
            sum(state_values) as state_values,
            sum(state_sum) as state_sum,
            max(state_max) as state_max,
            min(state_first_minute) as state_first_minute
{%- endmacro %}
