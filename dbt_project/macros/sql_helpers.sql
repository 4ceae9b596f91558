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
