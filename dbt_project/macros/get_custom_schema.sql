{#- Every model lands in the one configured schema (no target_schema prefixes). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ target.schema }}
{%- endmacro %}
