{#-
  The usage state of a line item at each instant: the state columns of the last event of
  the segment strictly before the instant (events_before = its event_ordinal; 0 and null
  states without one). `instants` has exactly line_item_key, segment_index, instant and the
  `carry` columns, which pass through (an instant may appear once per carried value);
  `events` has line_item_key, segment_index, event_ordinal, event_timestamp and the `states`
  columns, event_ordinal following event_timestamp. The result: line_item_key,
  segment_index, instant, the carried columns, events_before and the states. DuckDB answers
  with an as-of join; elsewhere one sorted pass over instants and events carries the states
  forward.
-#}
{% macro mh_instant_states(instants, events, states, carry=[]) -%}
    {{ return(adapter.dispatch('mh_instant_states', 'meterhouse')(instants, events, states,
                                                                  carry)) }}
{%- endmacro %}

{% macro duckdb__mh_instant_states(instants, events, states, carry) -%}
    select
        instants.line_item_key,
        instants.segment_index,
        instants.instant,
        {%- for column in carry %}
        instants.{{ column }},
        {%- endfor %}
        coalesce(last_events.event_ordinal, 0) as events_before
        {%- for state in states %},
        last_events.{{ state }}
        {%- endfor %}
    from {{ instants }} as instants
    asof left join (
        {#- of events sharing a timestamp, the last holds the state after all of them -#}
        select *
        from {{ events }}
        qualify event_ordinal = max(event_ordinal) over (
            partition by line_item_key, segment_index, event_timestamp)
    ) as last_events
        on instants.line_item_key = last_events.line_item_key
        and instants.segment_index = last_events.segment_index
        and instants.instant > last_events.event_timestamp
{%- endmacro %}

{% macro default__mh_instant_states(instants, events, states, carry) -%}
    select
        line_item_key,
        segment_index,
        happened_at as instant,
        {%- for column in carry %}
        {{ column }},
        {%- endfor %}
        events_before
        {%- for state in states %},
        {{ state }}
        {%- endfor %}
    from (
        {#- each instant takes the state of the event whose ordinal is its events_before -#}
        select
            line_item_key,
            segment_index,
            happened_at,
            is_event,
            {%- for column in carry %}
            {{ column }},
            {%- endfor %}
            events_before
            {%- for state in states %},
            max({{ state }}) over (
                partition by line_item_key, segment_index, events_before
            ) as {{ state }}
            {%- endfor %}
        from (
            {#- at equal times instants sort first: they see only earlier events -#}
            select
                *,
                case when is_event = 1 then event_ordinal else coalesce(max(event_ordinal) over (
                    partition by line_item_key, segment_index
                    order by happened_at, is_event
                    rows between unbounded preceding and current row
                ), 0) end as events_before
            from (
                select
                    line_item_key, segment_index, instant as happened_at, 0 as is_event,
                    null as event_ordinal
                    {%- for column in carry %}, {{ column }}{% endfor %}
                    {%- for state in states %}, null as {{ state }}{% endfor %}
                from {{ instants }}
                union all
                select
                    line_item_key, segment_index, event_timestamp as happened_at, 1 as is_event,
                    event_ordinal
                    {%- for column in carry %}, null as {{ column }}{% endfor %}
                    {%- for state in states %}, {{ state }}{% endfor %}
                from {{ events }}
            ) as timeline
        ) as counted
    ) as carried
    where is_event = 0
{%- endmacro %}
