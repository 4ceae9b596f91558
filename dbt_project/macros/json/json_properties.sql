{#-
  Reading event properties. Events keep their properties as JSON text; these macros read one
  top-level property by a key held in a column (meter field, filter key, group_by).
  Keys are validated by the catalog (no quotes or backslashes), so they can sit in a path.
-#}

{% macro mh_as_json(column) -%}
    {{ return(adapter.dispatch('mh_as_json', 'meterhouse')(column)) }}
{%- endmacro %}
{% macro default__mh_as_json(column) -%} cast({{ column }} as json) {%- endmacro %}
{% macro postgres__mh_as_json(column) -%} cast({{ column }} as jsonb) {%- endmacro %}


{#- Engine type name of the property `key` of `json`; null when the key is absent. -#}
{% macro mh_json_raw_type(json, key) -%}
    {{ return(adapter.dispatch('mh_json_raw_type', 'meterhouse')(json, key)) }}
{%- endmacro %}
{% macro duckdb__mh_json_raw_type(json, key) -%}
    json_type({{ json }}, '$."' || {{ key }} || '"')
{%- endmacro %}
{% macro postgres__mh_json_raw_type(json, key) -%}
    jsonb_typeof({{ json }} -> {{ key }})
{%- endmacro %}


{#- Portable kind of a raw type: number, string, boolean, null, object, array (or null). -#}
{% macro mh_json_kind(raw_type) -%}
    {{ return(adapter.dispatch('mh_json_kind', 'meterhouse')(raw_type)) }}
{%- endmacro %}
{% macro default__mh_json_kind(raw_type) -%} {{ raw_type }} {%- endmacro %}
{% macro duckdb__mh_json_kind(raw_type) -%}
    case
        when {{ raw_type }} in ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT', 'UHUGEINT') then 'number'
        when {{ raw_type }} = 'VARCHAR' then 'string'
        else lower({{ raw_type }})
    end
{%- endmacro %}


{#- The property as text: strings unquoted, numbers and booleans as written. -#}
{% macro mh_json_text(json, key) -%}
    {{ return(adapter.dispatch('mh_json_text', 'meterhouse')(json, key)) }}
{%- endmacro %}
{% macro duckdb__mh_json_text(json, key) -%}
    json_extract_string({{ json }}, '$."' || {{ key }} || '"')
{%- endmacro %}
{% macro postgres__mh_json_text(json, key) -%}
    ({{ json }} ->> {{ key }})
{%- endmacro %}


{#-
  Canonical text of a scalar property (DESIGN 3: filters, COUNT_UNIQUE, group_by): strings as
  they are, numbers without exponent or trailing zeros ("5", not "5.0"), booleans as
  true/false; null for missing, null, objects and arrays.
-#}
{% macro mh_canonical_scalar_text(kind, text) -%}
    case
        when {{ kind }} = 'string' then {{ text }}
        when {{ kind }} = 'boolean' then {{ text }}
        when {{ kind }} = 'number'
            then coalesce({{ mh_decimal_text(mh_try_decimal(text)) }}, {{ text }})
    end
{%- endmacro %}
