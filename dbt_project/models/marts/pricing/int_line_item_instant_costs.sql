{#-
  The cumulative cost of each line item at each instant of a billing period (DESIGN 3b.8):
  raw_cost = C(U(t)) - C(U(period start)) at list price (per bucket for bucketed meters);
  charged_cost = the same with the commitment applied, g(raw_cost), or per bucket for
  windowed commitments (the true-up is added per period, in fct_priced_usage);
  charged_cost_rounded = charged_cost rounded to the currency, half away from zero. A point's
  cost is the difference of charged_cost_rounded at its ends.
  Grain: line_item_key × period_index × instant.
-#}
{#- read by each branch below with its own filter, not stored first -#}
with instants as {{ mh_not_materialized() }} (
    select * from {{ ref('int_line_item_instants') }}
),

costs as (
    select * from {{ ref('int_price_quantity_costs') }}
),

event_costs as (
    select * from {{ ref('int_line_item_event_costs') }}
),

{#- One join per branch: C(U(t)) for most meters, the running bucket costs for bucketed MAX;
    the same for each period's first instant, its start (the cost accrued before it is not
    the period's). A join with those few rows, where a first_value window sorted every
    instant (14 s of 27 at 10M events). -#}
{%- for name, condition in [('costs_at_instants', 'true'),
                            ('period_start_costs', 'instants.is_period_start')] %}
{{ name }} as (
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
    where not instants.is_priced_per_bucket and {{ condition }}

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
    where instants.is_priced_per_bucket and {{ condition }}
),

{% endfor -%}
period_costs as (
    select
        costs.*,
        cast(costs.cumulative_cost - starts.cumulative_cost as {{ mh_quantity_type() }})
            as raw_cost
    from costs_at_instants as costs
    inner join period_start_costs as starts
        on costs.line_item_key = starts.line_item_key
        and costs.period_index = starts.period_index
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
