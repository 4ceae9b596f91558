{#-
  The instants a line item's cumulative cost is needed at: each billing period's start and
  end and the ends of every window piece inside it, with the usage U(t) counted from the
  segment start to t (DESIGN 3b.8): the state after the last event before t
  (events_before of them), evaluated by the meter's aggregation. AVG and WEIGHTED_SUM are
  rounded half away from zero to 12 places, exactly; WEIGHTED_SUM is the mean level over
  [segment start, t), the level starting from the earlier events for reset_usage NEVER.
  Bucketed MAX meters report Σ over (bucket, group) of the max so far (their cost is
  per bucket: int_line_item_event_costs).
  Grain: line_item_key × period_index × instant.
-#}
{%- set states = ['quantity', 'running_sum', 'running_max', 'running_distinct',
                  'running_moment_us', 'running_bucketed_quantity'] -%}

with periods as (
    select * from {{ ref('int_line_item_periods') }}
),

pieces as (
    select * from {{ ref('int_line_item_window_pieces') }}
),

events as (
    select * from {{ ref('int_line_item_events') }}
),

meter_events as (
    select * from {{ ref('int_meter_events') }}
    where quantity_error is null and quantity is not null
),

instants as (
    select distinct line_item_key, period_index, segment_index, instant
    from (
        select line_item_key, period_index, segment_index, period_start as instant
        from periods
        union all
        select line_item_key, period_index, segment_index, period_end as instant
        from periods
        union all
        select line_item_key, period_index, segment_index, piece_start as instant
        from pieces
        union all
        select line_item_key, period_index, segment_index, piece_end as instant
        from pieces
    ) as bounds
),

{#- the states of each (period, instant): an instant of a reset_usage NEVER segment may end
    one period and start the next, so it is looked up once per period (a lookup per segment
    instant joined back to the periods' instants cost more than the lookup itself) -#}
states_at_instants as (
    {{ mh_instant_states('instants', 'events', states, carry=['period_index']) }}
),

weighted_segments as (
    select distinct
        line_item_key, tenant_id, environment_id, meter_id, external_customer_id,
        segment_index, segment_start
    from periods
    where aggregation_type = 'WEIGHTED_SUM' and reset_usage = 'NEVER'
),

opening_levels as (
    select
        segments.line_item_key,
        segments.segment_index,
        sum(meter_events.quantity) as opening_level
    from weighted_segments as segments
    inner join meter_events
        on segments.tenant_id = meter_events.tenant_id
        and segments.environment_id = meter_events.environment_id
        and segments.meter_id = meter_events.meter_id
        and segments.external_customer_id = meter_events.external_customer_id
        and meter_events.event_timestamp < segments.segment_start
    group by segments.line_item_key, segments.segment_index
),

with_periods as (
    select
        instants.line_item_key,
        instants.period_index,
        instants.segment_index,
        instants.instant,
        instants.events_before,
        {%- for state in states %}
        instants.{{ state }},
        {%- endfor %}
        periods.tenant_id,
        periods.environment_id,
        periods.price_id,
        periods.aggregation_type,
        periods.is_priced_per_bucket,
        periods.currency_precision,
        periods.committed_amount,
        periods.commitment_overage_factor,
        periods.is_windowed_commitment,
        instants.instant = periods.period_start as is_period_start,
        instants.instant = periods.period_end as is_period_end,
        {{ mh_epoch_us('instants.instant') }} - {{ mh_epoch_us('periods.segment_start') }}
            as elapsed_us,
        coalesce(opening_levels.opening_level, 0) as opening_level
    from states_at_instants as instants
    inner join periods
        on instants.line_item_key = periods.line_item_key
        and instants.period_index = periods.period_index
    left join opening_levels
        on instants.line_item_key = opening_levels.line_item_key
        and instants.segment_index = opening_levels.segment_index
),

final as (
    select
        line_item_key,
        tenant_id,
        environment_id,
        price_id,
        period_index,
        segment_index,
        instant,
        is_period_start,
        is_period_end,
        cast(events_before as bigint) as events_before,
        aggregation_type,
        is_priced_per_bucket,
        currency_precision,
        committed_amount,
        commitment_overage_factor,
        is_windowed_commitment,
        cast(case
            when aggregation_type = 'COUNT' then events_before
            when aggregation_type in ('SUM', 'SUM_WITH_MULTIPLIER') then coalesce(running_sum, 0)
            when aggregation_type = 'AVG' then
                case when events_before > 0
                    then {{ mh_round_quotient('running_sum', 'events_before') }} else 0 end
            when is_priced_per_bucket then coalesce(running_bucketed_quantity, 0)
            when aggregation_type = 'MAX' then coalesce(running_max, 0)
            when aggregation_type = 'LATEST' then coalesce(quantity, 0)
            when aggregation_type = 'COUNT_UNIQUE' then coalesce(running_distinct, 0)
            when aggregation_type = 'WEIGHTED_SUM' then
                case when elapsed_us > 0 then {{ mh_round_quotient(
                    '(opening_level * elapsed_us + coalesce(running_sum, 0) * elapsed_us'
                    ~ ' - coalesce(running_moment_us, 0))', 'elapsed_us') }} else 0 end
        end as {{ mh_quantity_type() }}) as quantity
    from with_periods
)

select * from final
