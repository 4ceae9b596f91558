{#-
  Apache Spark implementations of the dispatched macros (target `spark`, dbt-spark). They sit
  together here so that the DuckDB and Postgres files stay readable; each mirrors the macro of
  the same name (see its file for the contract). What Spark does differently:
  - no timestamptz: `timestamp` is the session-time-zone instant type (the session is UTC);
  - no JSON type: properties stay text and are parsed into map<string, variant> where read;
    schema_of_variant gives the JSON kind;
  - decimals: the session runs with spark.sql.decimalOperations.allowPrecisionLoss=false, so a
    product of two decimal(38, 12) keeps scale 24 (bounded to 38 digits) as on DuckDB, and the
    same split keeps large products exact; there is no 128-bit integer, so exact integer
    division is a double estimate corrected with decimal(38, 0) remainders;
  - ANSI mode (Spark 4's default) raises on overflow, bad casts and division by zero: every
    such operation is guarded or uses try_cast/try_divide;
  - no DELETE on Parquet tables: the incremental models are tables on Spark (a batch run is a
    full rebuild; macros/incremental/incremental.sql).
-#}

{% macro spark__mh_timestamptz() -%} timestamp {%- endmacro %}

{% macro spark__mh_epoch_us(ts) -%} unix_micros({{ ts }}) {%- endmacro %}


{#- json/json_properties.sql -#}
{% macro spark__mh_as_json(column) -%} {{ column }} {%- endmacro %}

{% macro mh_spark_property(json, key) -%}
    try_element_at(from_json({{ json }}, 'map<string, variant>'), {{ key }})
{%- endmacro %}

{% macro spark__mh_json_raw_type(json, key) -%}
    schema_of_variant({{ mh_spark_property(json, key) }})
{%- endmacro %}

{% macro spark__mh_json_kind(raw_type) -%}
    case
        when {{ raw_type }} is null then null
        when {{ raw_type }} = 'STRING' then 'string'
        when {{ raw_type }} = 'BOOLEAN' then 'boolean'
        when {{ raw_type }} = 'VOID' then 'null'
        when {{ raw_type }} like 'OBJECT%' then 'object'
        when {{ raw_type }} like 'ARRAY%' then 'array'
        else 'number'
    end
{%- endmacro %}

{% macro spark__mh_json_text(json, key) -%}
    cast({{ mh_spark_property(json, key) }} as string)
{%- endmacro %}


{#- numbers/decimals.sql -#}
{% macro spark__mh_try_decimal(text) -%}
    case when trim({{ text }}) rlike {{ mh_numeric_pattern() }}
        then try_cast(trim({{ text }}) as {{ mh_quantity_type() }}) end
{%- endmacro %}

{% macro spark__mh_decimal_problem(text, dec) -%}
    case
        when not (trim({{ text }}) rlike {{ mh_numeric_pattern() }}) then 'not a number'
        when {{ dec }} is null then 'out of range'
        {#- both sides cast to one type: an implicit widening could overflow -#}
        when try_cast({{ dec }} as decimal(38, 18)) <> try_cast(trim({{ text }}) as decimal(38, 18))
            or try_cast({{ dec }} as decimal(38, 13)) <> try_cast(trim({{ text }}) as decimal(38, 13))
            then 'more than 12 decimal places'
    end
{%- endmacro %}

{% macro spark__mh_decimal_text(dec) -%}
    case when {{ dec }} = 0 then '0' else
        regexp_replace(
            regexp_replace(cast({{ dec }} as string), '([.][0-9]*?)0+$', '$1'), '[.]$', '')
    end
{%- endmacro %}

{#- the integer part (toward zero) of a decimal, as a decimal of scale 0 -#}
{% macro mh_spark_trunc(value) -%}
    (case when {{ value }} < 0 then ceil({{ value }}) else floor({{ value }}) end)
{%- endmacro %}

{% macro spark__mh_divide(numerator, denominator) -%}
    try_cast(try_divide(cast({{ numerator }} as double), cast({{ denominator }} as double))
        as {{ mh_value_type() }})
{%- endmacro %}


{#- pricing/pricing.sql -#}
{% macro spark__mh_round_product(a, b) -%}
    {%- set x = 'cast(' ~ a ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    {%- set y = 'cast(' ~ b ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    (case
        when abs(cast({{ x }} as double) * cast({{ y }} as double)) >= 1e25 then null
        when abs(cast({{ x }} as double) * cast({{ y }} as double)) < 1e13
            then cast({{ x }} * {{ y }} as {{ mh_quantity_type() }})
        when abs({{ y }}) < 1e13
            then cast(cast({{ mh_spark_trunc(x) }} as decimal(38, 0)) * {{ y }}
                + cast(({{ x }} - {{ mh_spark_trunc(x) }}) * {{ y }} as {{ mh_quantity_type() }})
                as {{ mh_quantity_type() }})
        else cast(cast({{ mh_spark_trunc(y) }} as decimal(38, 0)) * {{ x }}
            + cast(({{ y }} - {{ mh_spark_trunc(y) }}) * {{ x }} as {{ mh_quantity_type() }})
            as {{ mh_quantity_type() }})
    end)
{%- endmacro %}

{#-
  a / d for an integer-valued a (|a| < 10^38) and a positive integer d, exactly, as a
  decimal(38, 0): `mode` 'floor' rounds down, 'half_up' rounds halves up. A double estimate
  refined three times with the exact remainder (each step shrinks the error by about 2^-52),
  then corrected by one; the steps run in one `aggregate` so the SQL does not repeat itself.
-#}
{% macro mh_spark_integer_divide(a, d, mode) -%}
    {%- set estimate = 'coalesce(try_cast(try_divide(cast(s.r as double), cast(s.d as double))'
        ~ ' as decimal(38, 0)), 0)' -%}
    {%- set q = '(s.q + case when s.r < 0 then -1 when s.r >= s.d then 1 else 0 end)' -%}
    {%- set r = '(s.r - case when s.r < 0 then -s.d when s.r >= s.d then s.d else 0 end)' -%}
    aggregate(
        array(1, 2, 3),
        named_struct('q', cast(0 as decimal(38, 0)), 'r', cast({{ a }} as decimal(38, 0)),
            'd', cast({{ d }} as decimal(38, 0))),
        (s, step) -> named_struct('q', s.q + {{ estimate }}, 'r', s.r - {{ estimate }} * s.d,
            'd', s.d),
        s -> {% if mode == 'floor' %}{{ q }}{% else %}cast({{ q }} + case when 2 * {{ r }} >= s.d
            then 1 else 0 end as decimal(38, 0)){% endif %}
    )
{%- endmacro %}

{% macro spark__mh_round_quotient(numerator, denominator) -%}
    {%- set n = 'cast(' ~ numerator ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    {%- set units = 'abs(cast(' ~ mh_spark_trunc(n) ~ ' as decimal(38, 0)) * 1000000000000 + cast(('
        ~ n ~ ' - ' ~ mh_spark_trunc(n) ~ ') * 1000000000000 as decimal(38, 0)))' -%}
    (case when {{ n }} < 0 then -1 else 1 end
        * {{ mh_spark_integer_divide(units, denominator, 'half_up') }}
        * cast(0.000000000001 as {{ mh_quantity_type() }}))
{%- endmacro %}

{% macro spark__mh_exact_integer(value) -%} cast({{ value }} as decimal(38, 0)) {%- endmacro %}

{#- the estimate-and-correct division floors negative numerators too -#}
{% macro spark__mh_floor_divide(n, d) -%}
    {{ mh_spark_integer_divide(n, d, 'floor') }}
{%- endmacro %}
