{#- Time helpers. All timestamps are timestamptz in UTC. -#}

{% macro mh_trunc_minute(ts) -%}
    {{ return(adapter.dispatch('mh_trunc_minute', 'meterhouse')(ts)) }}
{%- endmacro %}
{% macro default__mh_trunc_minute(ts) -%} date_trunc('minute', {{ ts }}) {%- endmacro %}
{% macro postgres__mh_trunc_minute(ts) -%} date_trunc('minute', {{ ts }}, 'UTC') {%- endmacro %}

{% macro mh_trunc_hour(ts) -%}
    {{ return(adapter.dispatch('mh_trunc_hour', 'meterhouse')(ts)) }}
{%- endmacro %}
{% macro default__mh_trunc_hour(ts) -%} date_trunc('hour', {{ ts }}) {%- endmacro %}
{% macro postgres__mh_trunc_hour(ts) -%} date_trunc('hour', {{ ts }}, 'UTC') {%- endmacro %}

{#- Microseconds since the epoch, as a bigint. -#}
{% macro mh_epoch_us(ts) -%}
    {{ return(adapter.dispatch('mh_epoch_us', 'meterhouse')(ts)) }}
{%- endmacro %}
{% macro duckdb__mh_epoch_us(ts) -%} epoch_us({{ ts }}) {%- endmacro %}
{% macro postgres__mh_epoch_us(ts) -%}
    cast(extract(epoch from {{ ts }}) * 1000000 as bigint)
{%- endmacro %}

{% macro mh_add_minute(ts) -%}
    {{ return(adapter.dispatch('mh_add_minute', 'meterhouse')(ts)) }}
{%- endmacro %}
{% macro default__mh_add_minute(ts) -%} {{ ts }} + interval '1 minute' {%- endmacro %}

{#-
  Join condition: the calendar bucket (every window size but MINUTE; MONTH at the row's
  anchor) that holds a minute of `minutes` (columns timezone, hour_start, month_anchor_key,
  minute_start). calendar_buckets is keyed by UTC hour, so the join is an equality on
  (timezone, hour) plus a range within that hour's few buckets.
-#}
{% macro mh_minute_in_bucket(minutes, calendar) -%}
    {{ calendar }}.timezone = {{ minutes }}.timezone
        and {{ calendar }}.hour_start = {{ minutes }}.hour_start
        and {{ calendar }}.anchor_key = case when {{ calendar }}.window_size = 'MONTH'
            then {{ minutes }}.month_anchor_key else '' end
        and {{ minutes }}.minute_start >= {{ calendar }}.bucket_start
        and {{ minutes }}.minute_start < {{ calendar }}.bucket_end
{%- endmacro %}
