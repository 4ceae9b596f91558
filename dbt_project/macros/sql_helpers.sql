{#- Small SQL-writing helpers shared by the models. -#}

{#- `left.k = right.k and ...` for every key of a comma-separated key list. -#}
{% macro mh_join_on(keys, left, right) -%}
    {%- for key in keys.split(', ') -%}
        {{ ' and ' if not loop.first }}{{ left }}.{{ key }} = {{ right }}.{{ key }}
    {%- endfor -%}
{%- endmacro %}

{#- The timestamp-with-time-zone type (every instant we store is UTC). -#}
{% macro mh_timestamptz() -%}
    {{ return(adapter.dispatch('mh_timestamptz', 'meterhouse')()) }}
{%- endmacro %}
{% macro default__mh_timestamptz() -%} timestamptz {%- endmacro %}

{#-
  `as not materialized` for a CTE that several later CTEs read: each reader then streams
  it with its own filters instead of the engine storing all of it first (DuckDB materializes
  such CTEs by default; on fct_meter_usage's window fan-out that took GBs).
-#}
{% macro mh_not_materialized() -%}
    {{ return(adapter.dispatch('mh_not_materialized', 'meterhouse')()) }}
{%- endmacro %}
{% macro default__mh_not_materialized() -%} {%- endmacro %}
{% macro duckdb__mh_not_materialized() -%} not materialized {%- endmacro %}
{% macro postgres__mh_not_materialized() -%} not materialized {%- endmacro %}
{#- A CTE computed once however many times it is read (Spark, which has no such hint, runs
    no batch statements). -#}
{% macro mh_materialized() -%}
    {{ return(adapter.dispatch('mh_materialized', 'meterhouse')()) }}
{%- endmacro %}
{% macro default__mh_materialized() -%} {%- endmacro %}
{% macro duckdb__mh_materialized() -%} materialized {%- endmacro %}
{% macro postgres__mh_materialized() -%} materialized {%- endmacro %}

{#- The text type for casts (Spark calls it string). -#}
{% macro mh_text_type() -%}
    {{ return(adapter.dispatch('mh_text_type', 'meterhouse')()) }}
{%- endmacro %}
{% macro default__mh_text_type() -%} varchar {%- endmacro %}
{% macro spark__mh_text_type() -%} string {%- endmacro %}


{#-
  The latest valued event of a group (the LATEST state): the row with a quantity and the
  largest (event_timestamp, ingest_seq, event_id). `mh_latest_ranked` adds what
  `mh_latest_value(column)` needs to give that row's `column` in the group's aggregate. A
  row_number() window by default; on DuckDB one arg_max per column keyed on
  (event_timestamp, ingest_seq) as one hugeint, with no window (its sort of every row took
  35 s of fct_meter_usage_minutely at 10M events). ingest_seq is unique (a test on
  stg_events), so event_id never decides between two rows.
-#}
{% macro mh_latest_ranked(relation, partition_by) -%}
    {{ return(adapter.dispatch('mh_latest_ranked', 'meterhouse')(relation, partition_by)) }}
{%- endmacro %}
{% macro default__mh_latest_ranked(relation, partition_by) -%}
    select
        *,
        row_number() over (
            partition by {{ partition_by | join(', ') }}
            order by
                case when quantity is null then 0 else 1 end desc,
                event_timestamp desc,
                ingest_seq desc,
                event_id desc
        ) as latest_rank
    from {{ relation }}
{%- endmacro %}
{% macro duckdb__mh_latest_ranked(relation, partition_by) -%}
    select * from {{ relation }}
{%- endmacro %}

{% macro mh_latest_value(column) -%}
    {{ return(adapter.dispatch('mh_latest_value', 'meterhouse')(column)) }}
{%- endmacro %}
{% macro default__mh_latest_value(column) -%}
    max(case when latest_rank = 1 and quantity is not null then {{ column }} end)
{%- endmacro %}
{% macro duckdb__mh_latest_value(column) -%}
    arg_max({{ column }}, epoch_us(event_timestamp)::hugeint * 9223372036854775808 + ingest_seq)
        filter (where quantity is not null)
{%- endmacro %}
