{#-
  CEL meter expressions (DESIGN 3) at scan speed. models/cel.py validates each expression when
  the catalog loads and compiles it, per engine, into a program stored in
  catalog_meters.expression_sql_<engine> (JSON): the properties it reads, stages of SQL columns
  (stage 0 parses the properties, stage k computes the operations nested k deep from the columns
  before it) and the final quantity and error. `mh_cel_ctes` reads the distinct programs when
  the model runs and inlines them: the properties of each row's program are read once, then
  every stage is one CTE whose columns are `case cel_program when <n> then <its SQL> end`, so
  each operation reads its operands as columns and the SQL grows linearly with the expressions.
  Each CASE tests the programs in turn: a catalog with thousands of distinct expressions would
  make every row pay for them (then group programs by shape; not needed so far).
-#}

{#- The compiled program of every distinct expression in the catalog, when the model runs. -#}
{% macro mh_cel_programs() -%}
    {#- unit tests see no graph and may only read their declared inputs: no expressions there -#}
    {%- if not execute or not graph.get('sources') -%}{{ return([]) }}{%- endif -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', 'meterhouse')
        | selectattr('name', 'equalto', 'catalog_meters') | first -%}
    {%- set meters = adapter.get_relation(
        database=node.database, schema=node.schema, identifier=node.identifier) -%}
    {%- if meters is none -%}{{ return([]) }}{%- endif -%}
    {%- set column = 'expression_sql_' ~ target.type -%}
    {%- set query -%}
        select aggregation_expression, max({{ column }}) as program
        from {{ meters }}
        where aggregation_expression is not null
        group by aggregation_expression
        order by aggregation_expression
    {%- endset -%}
    {%- set programs = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- if row[1] is none -%}
            {{ exceptions.raise_compiler_error(
                'CEL expression ' ~ row[0] ~ ' has no compiled SQL for ' ~ target.type) }}
        {%- endif -%}
        {%- set program = fromjson(row[1]) -%}
        {%- do program.update({'expression': row[0], 'number': loop.index}) -%}
        {%- do programs.append(program) -%}
    {%- endfor -%}
    {{ return(programs) }}
{%- endmacro %}


{#- Postgres pulls subqueries up into their parent, repeating every column's expression where it
    is named; `offset 0` keeps each stage computed once. -#}
{% macro mh_cel_fence() -%}
    {{ return(adapter.dispatch('mh_cel_fence', 'meterhouse')()) }}
{%- endmacro %}
{% macro default__mh_cel_fence() -%} {%- endmacro %}
{% macro postgres__mh_cel_fence() -%} offset 0 {%- endmacro %}


{#- A text as a SQL string literal. -#}
{% macro mh_sql_text(text) -%}
    '{{ text | replace("'", "''") }}'
{%- endmacro %}


{#- The distinct column names of stage `index` over all programs, in order of appearance. -#}
{% macro mh_cel_stage_columns(programs, index) -%}
    {%- set names = [] -%}
    {%- for program in programs if program.stages | length > index -%}
        {%- for name in program.stages[index] if name not in names -%}
            {%- do names.append(name) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}


{#-
  CTEs that evaluate each row's CEL expression, ending with `cel_evaluated`: the columns of
  `relation` plus `cel_quantity` (decimal(38, 12), before the multiplier) and `cel_error` (why
  there is none). Rows whose `expression_column` is null get nulls. Emits `name as (...),` items,
  so call it inside a `with` list, before the CTE that reads cel_evaluated.
-#}
{% macro mh_cel_ctes(relation, expression_column, properties_column) -%}
    {%- set programs = mh_cel_programs() -%}
    {%- if programs | length == 0 %}
cel_evaluated as (
    select
        *,
        cast(null as {{ mh_quantity_type() }}) as cel_quantity,
        cast(null as {{ dbt.type_string() }}) as cel_error
    from {{ relation }}
),
    {%- else -%}
    {%- set fence = mh_cel_fence() -%}
    {%- set slots = programs | map(attribute='inputs') | map('length') | max -%}
    {%- set stages = programs | map(attribute='stages') | map('length') | max %}
cel_programs as (
    select
        *,
        case {{ expression_column }}
        {%- for program in programs %}
            when {{ mh_sql_text(program.expression) }} then {{ program.number }}
        {%- endfor %}
        end as cel_program
    from {{ relation }}
),

cel_properties_read as (
    select
        *
        {{- mh_cel_read_properties(programs, slots, properties_column) }}
    from cel_programs
    {{ fence }}
),

cel_properties as (
    select
        *
        {%- for slot in range(1, slots + 1) %},
        {{ mh_json_kind(mh_cel_read_type(slot)) }} as cel_in{{ slot }}_kind,
        {{ mh_cel_read_text(slot) }} as cel_in{{ slot }}_text
        {%- endfor %}
    from cel_properties_read
),
    {%- for index in range(stages) %}

cel_stage_{{ index }} as (
    select
        *
        {%- for name in mh_cel_stage_columns(programs, index) %},
        case cel_program
        {%- for program in programs
            if program.stages | length > index and name in program.stages[index] %}
            when {{ program.number }} then {{ program.stages[index][name] }}
        {%- endfor %}
        end as {{ name }}
        {%- endfor %}
    from {{ 'cel_properties' if index == 0 else 'cel_stage_' ~ (index - 1) }}
    {{ fence }}
),
    {%- endfor %}

cel_evaluated as (
    select
        *,
        cast(case cel_program
        {%- for program in programs %}
            when {{ program.number }} then {{ program.quantity }}
        {%- endfor %}
        end as {{ mh_quantity_type() }}) as cel_quantity,
        cast(case cel_program
        {%- for program in programs %}
            when {{ program.number }} then {{ program.error or 'null' }}
        {%- endfor %}
        end as {{ dbt.type_string() }}) as cel_error
    from cel_stage_{{ stages - 1 }}
),
    {%- endif %}
{%- endmacro %}


{#-
  Select items (each after a comma) reading the properties of each row's program, and where
  slot i (1-based) then is: `mh_cel_read_type(i)` (engine JSON type, for mh_json_kind) and
  `mh_cel_read_text(i)`. DuckDB parses the JSON document once per call, so it reads all the
  properties of a program with one call for the types and one for the texts (lists); Postgres
  looks each key up in its binary jsonb.
-#}
{% macro mh_cel_read_properties(programs, slots, properties_column) -%}
    {{ return(adapter.dispatch('mh_cel_read_properties', 'meterhouse')(
        programs, slots, properties_column)) }}
{%- endmacro %}
{% macro default__mh_cel_read_properties(programs, slots, properties_column) -%}
    {%- for slot in range(slots) %},
        case cel_program
        {%- for program in programs if program.inputs | length > slot %}
            when {{ program.number }} then {{
                mh_json_raw_type(properties_column, mh_sql_text(program.inputs[slot])) }}
        {%- endfor %}
        end as cel_read{{ slot + 1 }}_type,
        case cel_program
        {%- for program in programs if program.inputs | length > slot %}
            when {{ program.number }} then {{
                mh_json_text(properties_column, mh_sql_text(program.inputs[slot])) }}
        {%- endfor %}
        end as cel_read{{ slot + 1 }}_text
    {%- endfor %}
{%- endmacro %}
{% macro duckdb__mh_cel_read_properties(programs, slots, properties_column) -%}
    {%- for function, column in [('json_type', 'cel_read_types'),
                                 ('json_extract_string', 'cel_read_texts')] %},
        case cel_program
        {%- for program in programs %}
            {%- set paths = [] %}
            {%- for name in program.inputs %}
                {%- do paths.append(mh_sql_text('$."' ~ name ~ '"')) %}
            {%- endfor %}
            when {{ program.number }}
                then {{ function }}({{ properties_column }}, [{{ paths | join(', ') }}])
        {%- endfor %}
        end as {{ column }}
    {%- endfor %}
{%- endmacro %}

{% macro mh_cel_read_type(slot) -%}
    {{ return(adapter.dispatch('mh_cel_read_type', 'meterhouse')(slot)) }}
{%- endmacro %}
{% macro default__mh_cel_read_type(slot) -%} cel_read{{ slot }}_type {%- endmacro %}
{% macro duckdb__mh_cel_read_type(slot) -%} cel_read_types[{{ slot }}] {%- endmacro %}

{% macro mh_cel_read_text(slot) -%}
    {{ return(adapter.dispatch('mh_cel_read_text', 'meterhouse')(slot)) }}
{%- endmacro %}
{% macro default__mh_cel_read_text(slot) -%} cel_read{{ slot }}_text {%- endmacro %}
{% macro duckdb__mh_cel_read_text(slot) -%} cel_read_texts[{{ slot }}] {%- endmacro %}
