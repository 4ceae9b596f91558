{#-
  C(q) for every quantity a line item is priced at: the usage at each instant
  (int_line_item_instants) and, for bucketed MAX meters, the max of each (bucket, group) so
  far (int_line_item_events). Unrounded: money is rounded per line item, later.
  Grain: tenant × environment × price × quantity.
-#}
with instants as (
    select * from {{ ref('int_line_item_instants') }}
),

events as (
    select * from {{ ref('int_line_item_events') }}
),

prices as (
    select * from {{ ref('stg_prices') }}
),

tiers as (
    select * from {{ ref('stg_price_tiers') }}
),

quantities as (
    select tenant_id, environment_id, price_id, quantity
    from instants
    where not is_priced_per_bucket
    union all
    select tenant_id, environment_id, price_id, bucket_group_max as quantity
    from events
    where is_priced_per_bucket
),

final as (
    {{ mh_price_quantities('quantities', 'prices', 'tiers') }}
)

select * from final
