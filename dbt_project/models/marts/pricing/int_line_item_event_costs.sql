{#-
  Bucketed MAX meters are priced per (meter bucket, group) on the part of each bucket inside
  the billing period (DESIGN 3b.8): each event adds C(new max) - C(old max) of its (bucket,
  group). With a windowed commitment each bucket is a commitment window: what a bucket
  charges is g(its cost), so an event adds g(bucket cost after) - g(bucket cost before).
  running_raw_cost / running_charged_cost are the period's costs after each event.
  Grain: line_item_key × segment_index × event_ordinal (a segment is a period here).
-#}
{%- set event_order = 'event_ordinal' -%}

with events as (
    select * from {{ ref('int_line_item_events') }}
    where is_priced_per_bucket
),

costs as (
    select * from {{ ref('int_price_quantity_costs') }}
),

periods as (
    select * from {{ ref('int_line_item_periods') }}
    where is_priced_per_bucket
),

with_max_costs as (
    select
        events.*,
        periods.committed_amount,
        periods.commitment_overage_factor,
        periods.is_windowed_commitment,
        costs.cost as bucket_group_max_cost
    from events
    inner join periods
        on events.line_item_key = periods.line_item_key
        and events.segment_index = periods.period_index
    left join costs
        on events.tenant_id = costs.tenant_id
        and events.environment_id = costs.environment_id
        and events.price_id = costs.price_id
        and events.bucket_group_max = costs.quantity
),

{#- The old max's cost is the previous event's new max's cost in the same (bucket, group). -#}
with_cost_deltas as (
    select
        *,
        cast(bucket_group_max_cost - coalesce(lag(bucket_group_max_cost) over (
            partition by line_item_key, segment_index, meter_bucket_start, group_value
            order by {{ event_order }}
        ), 0) as {{ mh_quantity_type() }}) as cost_delta
    from with_max_costs
),

with_bucket_costs as (
    select
        *,
        sum(cost_delta) over (
            partition by line_item_key, segment_index, meter_bucket_start
            order by {{ event_order }}
            rows between unbounded preceding and current row
        ) as bucket_cost
    from with_cost_deltas
),

with_charged_deltas as (
    select
        *,
        case when is_windowed_commitment
            then {{ mh_committed_charge('bucket_cost', 'committed_amount',
                                        'commitment_overage_factor') }}
                - {{ mh_committed_charge('(bucket_cost - cost_delta)', 'committed_amount',
                                         'commitment_overage_factor') }}
            else cost_delta
        end as charged_delta
    from with_bucket_costs
),

final as (
    select
        line_item_key,
        segment_index,
        event_ordinal,
        event_timestamp,
        meter_bucket_start,
        committed_amount,
        commitment_overage_factor,
        is_windowed_commitment,
        cost_delta,
        cast(bucket_cost as {{ mh_quantity_type() }}) as bucket_cost,
        cast(sum(cost_delta) over segment_so_far as {{ mh_quantity_type() }})
            as running_raw_cost,
        cast(sum(charged_delta) over segment_so_far as {{ mh_quantity_type() }})
            as running_charged_cost
    from with_charged_deltas
    window segment_so_far as (
        partition by line_item_key, segment_index
        order by {{ event_order }}
        rows between unbounded preceding and current row
    )
)

select * from final
