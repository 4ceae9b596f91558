{#- Generic test: no two rows share the same values of `columns` (a model's grain). -#}
{% test mh_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Generic test: `expression` holds on every row (rows where it does not are returned). -#}
{% test mh_expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
