{#- Generic test: no two rows share the same values of `columns` (a model's grain). -#}
{#- `scope` (incremental models): a batch run checks only the rows it rewrote (mh_tested_rows). -#}
{% test mh_unique_combination(model, columns, scope=none) %}
    {{ return(adapter.dispatch('test_mh_unique_combination', 'meterhouse')(
        mh_tested_rows(model, scope), columns)) }}
{% endtest %}

{% macro default__test_mh_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }} as tested_rows
group by {{ columns | join(', ') }}
having count(*) > 1
{% endmacro %}

{#-
  DuckDB: grouping tens of millions of wide keys (strings, timestamps) needs more memory than
  the warehouse's limit, so group their 64-bit hashes first (16 bytes a row), in eight slices
  of the hash space so that each aggregation holds an eighth of them, and compare the keys
  themselves only for the hashes seen twice: the same answer, exact, in a fraction of the
  memory (a build holds the rest of the limit by the time its tests run).
-#}
{% macro duckdb__test_mh_unique_combination(model, columns) %}
{%- set keys = columns | join(', ') %}
with key_hashes as not materialized (
    select hash({{ keys }}) as key_hash
    from {{ model }} as tested_rows
),

repeated_hashes as (
    {%- for slice in range(8) %}
    select key_hash
    from key_hashes
    where key_hash % 8 = {{ slice }}
    group by key_hash
    having count(*) > 1
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select {{ keys }}, count(*) as rows_with_this_key
from {{ model }} as tested_rows
where hash({{ keys }}) in (select key_hash from repeated_hashes)
group by {{ keys }}
having count(*) > 1
{% endmacro %}

{#- Generic test: `expression` holds on every row (rows where it does not are returned). -#}
{% test mh_expression_is_true(model, expression, scope=none) %}
select * from {{ mh_tested_rows(model, scope) }} as tested_rows where not ({{ expression }})
{% endtest %}
