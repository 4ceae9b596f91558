{#- Generic test: no two rows share the same values of `columns` (a model's grain). -#}
{% test mh_unique_combination(model, columns) %}
    {{ return(adapter.dispatch('test_mh_unique_combination', 'meterhouse')(model, columns)) }}
{% endtest %}

{% macro default__test_mh_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endmacro %}

{#-
  DuckDB: grouping tens of millions of wide keys (strings, timestamps) needs more memory than
  the warehouse's limit, so group their 64-bit hashes first (16 bytes a row) and compare the
  keys themselves only for the hashes seen twice: the same answer, exact, in a fraction of the
  memory.
-#}
{% macro duckdb__test_mh_unique_combination(model, columns) %}
{%- set keys = columns | join(', ') %}
with repeated_hashes as (
    select hash({{ keys }}) as key_hash
    from {{ model }}
    group by 1
    having count(*) > 1
)

select {{ keys }}, count(*) as rows_with_this_key
from {{ model }}
where hash({{ keys }}) in (select key_hash from repeated_hashes)
group by {{ keys }}
having count(*) > 1
{% endmacro %}

{#- Generic test: `expression` holds on every row (rows where it does not are returned). -#}
{% test mh_expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
