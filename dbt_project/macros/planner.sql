{#-
  Postgres plans our multi-column joins from row estimates of 1 (CTE scans have no
  statistics, key columns are correlated) and picks nested loops that rerun whole window
  passes per row: minutes instead of a second. Every join in the project is an equality on
  keys (plus a range), so hash joins are always right: every table model turns nested loops
  off for its own transaction and analyzes its table for the models that read it
  (dbt_project.yml).
-#}
{% macro mh_prefer_hash_joins() -%}
    {{ return(adapter.dispatch('mh_prefer_hash_joins', 'meterhouse')()) }}
{%- endmacro %}
{% macro default__mh_prefer_hash_joins() -%} {%- endmacro %}
{% macro postgres__mh_prefer_hash_joins() -%} set local enable_nestloop = off {%- endmacro %}

{% macro mh_analyze(relation) -%}
    {{ return(adapter.dispatch('mh_analyze', 'meterhouse')(relation)) }}
{%- endmacro %}
{% macro default__mh_analyze(relation) -%} {%- endmacro %}
{% macro postgres__mh_analyze(relation) -%} analyze {{ relation }} {%- endmacro %}
