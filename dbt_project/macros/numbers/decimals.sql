{#-
  Exact numbers. Quantities are decimal(38, 12) (the widest exact type on every target);
  parsing never goes through a float.
-#}

{% macro mh_quantity_type() -%} {{ var('mh_quantity_type') }} {%- endmacro %}
{% macro mh_value_type() -%} {{ var('mh_value_type') }} {%- endmacro %}

{#- A numeric literal as sent: optional sign, digits, optional fraction and exponent. -#}
{% macro mh_numeric_pattern() -%}
    '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$'
{%- endmacro %}


{#- Text to decimal(38, 12); null when not a number or not representable. -#}
{% macro mh_try_decimal(text) -%}
    {{ return(adapter.dispatch('mh_try_decimal', 'meterhouse')(text)) }}
{%- endmacro %}
{% macro duckdb__mh_try_decimal(text) -%}
    case when regexp_matches(trim({{ text }}), {{ mh_numeric_pattern() }})
        then try_cast(trim({{ text }}) as {{ mh_quantity_type() }}) end
{%- endmacro %}
{% macro postgres__mh_try_decimal(text) -%}
    case when trim({{ text }}) ~ {{ mh_numeric_pattern() }}
        and abs(cast(trim({{ text }}) as numeric)) < 1e26
        then cast(cast(trim({{ text }}) as numeric) as {{ mh_quantity_type() }}) end
{%- endmacro %}


{#- Why a text is not a usable quantity (null when it is). `dec` is mh_try_decimal(text). -#}
{% macro mh_decimal_problem(text, dec) -%}
    {{ return(adapter.dispatch('mh_decimal_problem', 'meterhouse')(text, dec)) }}
{%- endmacro %}
{% macro duckdb__mh_decimal_problem(text, dec) -%}
    case
        when not regexp_matches(trim({{ text }}), {{ mh_numeric_pattern() }}) then 'not a number'
        when {{ dec }} is null then 'out of range'
        {#- no coalesce here: DuckDB would compare both at the narrower scale -#}
        when try_cast(trim({{ text }}) as decimal(38, 18)) is not null
            and {{ dec }} <> try_cast(trim({{ text }}) as decimal(38, 18))
            then 'more than 12 decimal places'
    end
{%- endmacro %}
{% macro postgres__mh_decimal_problem(text, dec) -%}
    case
        when not (trim({{ text }}) ~ {{ mh_numeric_pattern() }}) then 'not a number'
        when {{ dec }} is null then 'out of range'
        when scale(trim_scale(cast(trim({{ text }}) as numeric))) > 12
            then 'more than 12 decimal places'
    end
{%- endmacro %}


{#- Canonical decimal text: no exponent, no trailing zeros, "0" for zero (DESIGN 3b.11). -#}
{% macro mh_decimal_text(dec) -%}
    {{ return(adapter.dispatch('mh_decimal_text', 'meterhouse')(dec)) }}
{%- endmacro %}
{% macro default__mh_decimal_text(dec) -%}
    case when {{ dec }} = 0 then '0' else
        regexp_replace(
            regexp_replace(cast({{ dec }} as varchar), '([.][0-9]*?)0+$', '\1'), '[.]$', '')
    end
{%- endmacro %}
{% macro postgres__mh_decimal_text(dec) -%}
    cast(trim_scale({{ dec }}) as text)
{%- endmacro %}


{#-
  quantity × multiplier rounded half away from zero to 12 places. DuckDB (and Spark) multiply
  two decimal(38, 12) at scale 24, which overflows past 10^14: larger products go through
  scale 6.
-#}
{% macro mh_multiply(quantity, multiplier) -%}
    {{ return(adapter.dispatch('mh_multiply', 'meterhouse')(quantity, multiplier)) }}
{%- endmacro %}
{% macro default__mh_multiply(quantity, multiplier) -%}
    case
        when {{ multiplier }} is null then {{ quantity }}
        when abs(cast({{ quantity }} as double) * cast({{ multiplier }} as double)) < 1e13
            then cast({{ quantity }} * {{ multiplier }} as {{ mh_quantity_type() }})
        when abs(cast({{ quantity }} as double) * cast({{ multiplier }} as double)) < 1e25
            then cast(cast({{ quantity }} as decimal(38, 6)) * cast({{ multiplier }} as decimal(38, 6))
                as {{ mh_quantity_type() }})
    end
{%- endmacro %}
{% macro postgres__mh_multiply(quantity, multiplier) -%}
    case
        when {{ multiplier }} is null then {{ quantity }}
        when abs({{ quantity }} * {{ multiplier }}) < 1e25
            then cast(round({{ quantity }} * {{ multiplier }}, 12) as {{ mh_quantity_type() }})
    end
{%- endmacro %}


{#- Exact division for AVG and WEIGHTED_SUM values. -#}
{% macro mh_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('mh_divide', 'meterhouse')(numerator, denominator)) }}
{%- endmacro %}
{% macro duckdb__mh_divide(numerator, denominator) -%}
    cast(cast({{ numerator }} as double) / cast({{ denominator }} as double)
        as {{ mh_value_type() }})
{%- endmacro %}
{% macro postgres__mh_divide(numerator, denominator) -%}
    cast(cast({{ numerator }} as numeric) / cast({{ denominator }} as numeric)
        as {{ mh_value_type() }})
{%- endmacro %}
