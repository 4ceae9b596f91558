{#-
  Priced usage: what each subscription line item costs in each billing period (DESIGN 3
  "Prices", 3b.8), with its usage. quantity is U(period end), the meter's aggregation from
  the segment start (the period start, or the subscription start for reset_usage NEVER;
  opening_quantity is U(period start), 0 unless NEVER); for bucketed MAX meters it is Σ over
  (bucket, group) of the maxima inside the period. usage_cost is the usage at list price,
  C(U(end)) - C(U(start)) (per bucket for bucketed meters), rounded once to the currency.
  With a commitment (CommitmentInfo): at or above it, commitment + overage × overage_factor;
  below it, the usage cost plus, with true-up, the shortfall; windowed commitments apply per
  meter bucket (empty buckets included). total_cost = commitment_utilized_amount +
  overage_amount + true_up_amount, each rounded to the currency.
  Grain: tenant × environment × subscription × price × period_index.
-#}
with periods as (
    select * from {{ ref('int_line_item_periods') }}
),

instant_costs as (
    select * from {{ ref('int_line_item_instant_costs') }}
),

event_costs as (
    select * from {{ ref('int_line_item_event_costs') }}
),

period_bounds as (
    select
        line_item_key,
        period_index,
        max(case when is_period_end then quantity end) as quantity,
        max(case when is_period_start then quantity end) as opening_quantity,
        max(case when is_period_end then events_before end)
            - max(case when is_period_start then events_before end) as event_count,
        max(case when is_period_end then raw_cost end) as usage_cost_exact,
        max(case when is_period_end then charged_cost end) as charged_exact
    from instant_costs
    where is_period_start or is_period_end
    group by line_item_key, period_index
),

{#- Windowed commitments: each meter bucket (part) of the period with usage is a window. -#}
bucket_costs as (
    select
        line_item_key,
        segment_index as period_index,
        meter_bucket_start,
        max(committed_amount) as committed_amount,
        max(commitment_overage_factor) as commitment_overage_factor,
        sum(cost_delta) as bucket_cost
    from event_costs
    where is_windowed_commitment
    group by line_item_key, segment_index, meter_bucket_start
),

windowed_outcomes as (
    select
        line_item_key,
        period_index,
        count(*) as buckets_with_usage,
        sum(case when bucket_cost < committed_amount
            then bucket_cost else committed_amount end) as utilized,
        sum(case when bucket_cost >= committed_amount
            then {{ mh_committed_charge('bucket_cost', 'committed_amount',
                                        'commitment_overage_factor') }} - committed_amount
            else 0 end) as overage,
        sum(case when bucket_cost < committed_amount
            then committed_amount - bucket_cost else 0 end) as shortfall
    from bucket_costs
    group by line_item_key, period_index
),

period_usage as (
    select
        periods.*,
        bounds.quantity,
        bounds.opening_quantity,
        bounds.event_count,
        bounds.usage_cost_exact,
        bounds.charged_exact,
        windowed.buckets_with_usage,
        windowed.utilized as windowed_utilized,
        windowed.overage as windowed_overage,
        windowed.shortfall as windowed_shortfall
    from periods
    inner join period_bounds as bounds
        on periods.line_item_key = bounds.line_item_key
        and periods.period_index = bounds.period_index
    left join windowed_outcomes as windowed
        on periods.line_item_key = windowed.line_item_key
        and periods.period_index = windowed.period_index
),

{#- The exact parts of the charge (CommitmentInfo), before rounding. -#}
commitment_parts as (
    select
        *,
        case
            when committed_amount is null then null
            when is_windowed_commitment then coalesce(windowed_utilized, 0)
            when usage_cost_exact < committed_amount then usage_cost_exact
            else committed_amount
        end as utilized_exact,
        case
            when committed_amount is null then null
            when is_windowed_commitment then coalesce(windowed_overage, 0)
            when usage_cost_exact < committed_amount then 0
            else charged_exact - committed_amount
        end as overage_exact,
        case
            when committed_amount is null or not commitment_true_up_enabled then 0
            when is_windowed_commitment then coalesce(windowed_shortfall, 0)
                + committed_amount
                    * (coalesce(meter_bucket_count, 0) - coalesce(buckets_with_usage, 0))
            when usage_cost_exact < committed_amount then committed_amount - usage_cost_exact
            else 0
        end as true_up_exact
    from period_usage
),

rounded as (
    select
        *,
        {{ mh_round_money('usage_cost_exact', 'currency_precision') }} as usage_cost,
        {{ mh_round_money('charged_exact + true_up_exact', 'currency_precision') }}
            as total_cost,
        {{ mh_round_money('utilized_exact', 'currency_precision') }}
            as commitment_utilized_amount
    from commitment_parts
),

{#- Rounded parts add up: the remainder goes to the overage if any, else to the true-up. -#}
with_true_up as (
    select
        *,
        cast(case
            when committed_amount is null then null
            when overage_exact = 0 then total_cost - commitment_utilized_amount
            else {{ mh_round_money('true_up_exact', 'currency_precision') }}
        end as {{ mh_quantity_type() }}) as true_up_amount
    from rounded
),

final as (
    select
        tenant_id,
        environment_id,
        subscription_id,
        price_id,
        subscription_line_item_id,
        meter_id,
        external_customer_id,
        currency,
        period_index,
        period_start,
        period_end,
        cast(quantity as {{ mh_quantity_type() }}) as quantity,
        cast(opening_quantity as {{ mh_quantity_type() }}) as opening_quantity,
        cast(event_count as bigint) as event_count,
        usage_cost,
        commitment_type,
        cast(committed_amount as {{ mh_quantity_type() }}) as commitment_amount,
        commitment_utilized_amount,
        cast(total_cost - commitment_utilized_amount - true_up_amount
            as {{ mh_quantity_type() }}) as overage_amount,
        true_up_amount,
        total_cost
    from with_true_up
)

select * from final
