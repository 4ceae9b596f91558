{#-
  Every billing period of every metered line item, with the usage segment it belongs to:
  the span its usage U(x) is counted over. A segment is the period itself when usage resets
  each period (reset_usage BILLING_PERIOD, and always for bucketed MAX meters, which are
  priced per bucket part inside the period: DESIGN 3b.8); for reset_usage NEVER it is the
  whole subscription (segment_index 0). meter_bucket_count is how many meter buckets the
  period meets (windowed commitments only). The line item's currency and commitment are
  carried along so that later models join nothing else.
  Grain: tenant × environment × subscription × price × period_index (line_item_key ×
  period_index).
-#}
with line_items as (
    select * from {{ ref('dim_subscription_line_items') }}
    where price_type = 'USAGE' and meter_id is not null
),

periods as (
    select * from {{ ref('stg_subscription_billing_periods') }}
),

subscription_spans as (
    select
        tenant_id,
        environment_id,
        subscription_id,
        min(period_start) as subscription_start,
        max(period_end) as last_period_end
    from periods
    group by tenant_id, environment_id, subscription_id
),

final as (
    select
        line_items.line_item_key,
        line_items.tenant_id,
        line_items.environment_id,
        line_items.subscription_id,
        line_items.price_id,
        line_items.subscription_line_item_id,
        line_items.meter_id,
        line_items.external_customer_id,
        line_items.aggregation_type,
        line_items.bucket_size,
        line_items.reset_usage,
        line_items.is_priced_per_bucket,
        line_items.currency,
        line_items.currency_precision,
        line_items.commitment_type,
        line_items.committed_amount,
        line_items.commitment_overage_factor,
        coalesce(line_items.commitment_true_up_enabled, false) as commitment_true_up_enabled,
        coalesce(line_items.commitment_is_windowed and line_items.is_priced_per_bucket, false)
            as is_windowed_commitment,
        periods.period_index,
        periods.period_start,
        periods.period_end,
        case when line_items.reset_usage = 'NEVER' and not line_items.is_priced_per_bucket
            then 0 else periods.period_index end as segment_index,
        case when line_items.reset_usage = 'NEVER' and not line_items.is_priced_per_bucket
            then spans.subscription_start else periods.period_start end as segment_start,
        case when line_items.reset_usage = 'NEVER' and not line_items.is_priced_per_bucket
            then spans.last_period_end else periods.period_end end as segment_end,
        case line_items.bucket_size
            when 'HOUR' then periods.hour_buckets
            when 'DAY' then periods.day_buckets
            when 'MONTH' then periods.month_buckets
        end as meter_bucket_count
    from line_items
    inner join periods
        on line_items.tenant_id = periods.tenant_id
        and line_items.environment_id = periods.environment_id
        and line_items.subscription_id = periods.subscription_id
    inner join subscription_spans as spans
        on line_items.tenant_id = spans.tenant_id
        and line_items.environment_id = spans.environment_id
        and line_items.subscription_id = spans.subscription_id
)

select * from final
