{#-
  Subscription line items: one per subscription × price of its plan, with everything needed
  to price it (the price's terms, the meter's aggregation and reset, the customer's timezone,
  the commitment). committed_amount is the commitment as money: its amount, or the cost of
  its quantity at this price.
  Grain: tenant × environment × subscription × price.
-#}
with subscriptions as (
    select * from {{ ref('stg_subscriptions') }}
),

plan_prices as (
    select * from {{ ref('stg_plan_prices') }}
),

plans as (
    select * from {{ ref('stg_plans') }}
),

prices as (
    select * from {{ ref('stg_prices') }}
),

tiers as (
    select * from {{ ref('stg_price_tiers') }}
),

meters as (
    select * from {{ ref('stg_meters') }}
),

features as (
    select * from {{ ref('stg_features') }}
),

customers as (
    select * from {{ ref('stg_customers') }}
),

commitments as (
    select * from {{ ref('stg_subscription_commitments') }}
),

line_items as (
    select
        subscriptions.tenant_id,
        subscriptions.environment_id,
        subscriptions.subscription_id,
        prices.price_id,
        subscriptions.subscription_id || ':' || prices.price_id as subscription_line_item_id,
        subscriptions.customer_id,
        subscriptions.external_customer_id,
        coalesce(customers.timezone, 'UTC') as customer_timezone,
        subscriptions.plan_id,
        plans.plan_name,
        plan_prices.price_position,
        prices.price_type,
        prices.price_display_name,
        prices.meter_id,
        meters.meter_name,
        features.feature_id,
        features.feature_name,
        subscriptions.currency,
        subscriptions.currency_precision,
        prices.billing_model,
        prices.tier_mode,
        prices.amount,
        prices.divide_by,
        prices.package_round,
        subscriptions.billing_period,
        subscriptions.billing_period_count,
        subscriptions.start_date,
        subscriptions.end_date,
        subscriptions.billing_anchor,
        meters.aggregation_type,
        meters.bucket_size,
        meters.group_by,
        meters.reset_usage,
        coalesce(meters.aggregation_type = 'MAX' and meters.bucket_size is not null, false)
            as is_priced_per_bucket,
        commitments.commitment_type,
        commitments.commitment_amount,
        commitments.commitment_quantity,
        commitments.overage_factor as commitment_overage_factor,
        commitments.true_up_enabled as commitment_true_up_enabled,
        commitments.is_windowed as commitment_is_windowed
    from subscriptions
    inner join plan_prices
        on subscriptions.tenant_id = plan_prices.tenant_id
        and subscriptions.environment_id = plan_prices.environment_id
        and subscriptions.plan_id = plan_prices.plan_id
    inner join prices
        on plan_prices.tenant_id = prices.tenant_id
        and plan_prices.environment_id = prices.environment_id
        and plan_prices.price_id = prices.price_id
    left join plans
        on subscriptions.tenant_id = plans.tenant_id
        and subscriptions.environment_id = plans.environment_id
        and subscriptions.plan_id = plans.plan_id
    left join meters
        on prices.tenant_id = meters.tenant_id
        and prices.environment_id = meters.environment_id
        and prices.meter_id = meters.meter_id
    left join features
        on prices.tenant_id = features.tenant_id
        and prices.environment_id = features.environment_id
        and prices.meter_id = features.meter_id
    left join customers
        on subscriptions.tenant_id = customers.tenant_id
        and subscriptions.environment_id = customers.environment_id
        and subscriptions.customer_id = customers.customer_id
    left join commitments
        on subscriptions.tenant_id = commitments.tenant_id
        and subscriptions.environment_id = commitments.environment_id
        and subscriptions.subscription_id = commitments.subscription_id
        and prices.price_id = commitments.price_id
),

committed_quantities as (
    select tenant_id, environment_id, price_id, commitment_quantity as quantity
    from line_items
    where commitment_type = 'quantity'
),

committed_quantity_costs as (
    {{ mh_price_quantities('committed_quantities', 'prices', 'tiers') }}
),

{#- line_item_key: a compact key for the pricing models' joins (one column plans well) -#}
final as (
    select
        dense_rank() over (
            order by line_items.tenant_id, line_items.environment_id,
                line_items.subscription_id, line_items.price_id
        ) as line_item_key,
        line_items.*,
        cast(case line_items.commitment_type
            when 'amount' then line_items.commitment_amount
            when 'quantity' then committed_quantity_costs.cost
        end as {{ mh_quantity_type() }}) as committed_amount
    from line_items
    left join committed_quantity_costs
        on line_items.tenant_id = committed_quantity_costs.tenant_id
        and line_items.environment_id = committed_quantity_costs.environment_id
        and line_items.price_id = committed_quantity_costs.price_id
        and line_items.commitment_quantity = committed_quantity_costs.quantity
)

select * from final
