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
