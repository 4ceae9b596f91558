{#-
  The cumulative cost of each line item at each instant of a billing period (DESIGN 3b.8):
  raw_cost = C(U(t)) - C(U(period start)) at list price (per bucket for bucketed meters);
  charged_cost = the same with the commitment applied, g(raw_cost), or per bucket for
  windowed commitments (the true-up is added per period, in fct_priced_usage);
  charged_cost_rounded = charged_cost rounded to the currency, half away from zero. A point's
  cost is the difference of charged_cost_rounded at its ends.
  Grain: line_item_key × period_index × instant.
-#}
with instants as (
    select * from {{ ref('int_line_item_instants') }}
),

costs as (
    select * from {{ ref('int_price_quantity_costs') }}
),

event_costs as (
    select * from {{ ref('int_line_item_event_costs') }}
),

{#- One join per branch: C(U(t)) for most meters, the running bucket costs for bucketed MAX. -#}
costs_at_instants as (
    select
        instants.*,
        costs.cost as cumulative_cost,
        cast(null as {{ mh_quantity_type() }}) as cumulative_bucket_charge
    from instants
    left join costs
        on instants.tenant_id = costs.tenant_id
        and instants.environment_id = costs.environment_id
        and instants.price_id = costs.price_id
        and instants.quantity = costs.quantity
    where not instants.is_priced_per_bucket

    union all

    select
        instants.*,
        coalesce(event_costs.running_raw_cost, 0) as cumulative_cost,
        coalesce(event_costs.running_charged_cost, 0) as cumulative_bucket_charge
    from instants
    left join event_costs
        on instants.line_item_key = event_costs.line_item_key
        and instants.segment_index = event_costs.segment_index
        and instants.events_before = event_costs.event_ordinal
    where instants.is_priced_per_bucket
),

{#- The first instant of a period is its start: the cost accrued before it is not the period's. -#}
period_costs as (
    select
        *,
        cast(cumulative_cost - first_value(cumulative_cost) over (
            partition by line_item_key, period_index
            order by instant
            rows between unbounded preceding and current row
        ) as {{ mh_quantity_type() }}) as raw_cost
    from costs_at_instants
),

charged as (
    select
        *,
        cast(case
            when committed_amount is null then raw_cost
            when is_windowed_commitment then cumulative_bucket_charge
            else {{ mh_committed_charge('raw_cost', 'committed_amount',
                                        'commitment_overage_factor') }}
        end as {{ mh_quantity_type() }}) as charged_cost
    from period_costs
),

final as (
    select
        line_item_key,
        period_index,
        instant,
        is_period_start,
        is_period_end,
        events_before,
        quantity,
        raw_cost,
        charged_cost,
        {{ mh_round_money('charged_cost', 'currency_precision') }} as charged_cost_rounded
    from charged
)

select * from final
