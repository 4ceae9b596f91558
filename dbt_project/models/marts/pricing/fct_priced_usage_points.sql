{#-
  Priced usage per window point: the cost of each window (fct_meter_usage's windows: every
  window size, the customer's calendar, only windows with events) of each metered line
  item. A point's cost is Σ over the billing periods it meets of round(cumulative cost at
  its end) - round(cumulative cost at its start), the cumulative cost counted from the
  period start with the commitment applied (DESIGN 3b.8), so the points of a period add up
  to its cost (without the true-up, charged at the period's end; WEIGHTED_SUM excepted: its
  cumulative value also moves between events). usage is the window's meter usage.
  Grain: tenant × environment × subscription × price × window_size × window_start.
-#}
with pieces as {{ mh_not_materialized() }} (
    select * from {{ ref('int_line_item_window_pieces') }}
),

instant_costs as (
    select * from {{ ref('int_line_item_instant_costs') }}
),

periods as (
    select * from {{ ref('int_line_item_periods') }}
),

line_items as (
    select distinct
        line_item_key,
        tenant_id,
        environment_id,
        subscription_id,
        price_id,
        subscription_line_item_id,
        meter_id,
        external_customer_id,
        currency
    from periods
),

{#- Each piece's two ends, signed, so that one join prices both. -#}
piece_ends as (
    select
        line_item_key, window_size, window_start, window_end, timezone, window_usage,
        window_event_count, period_index, piece_start as instant, -1 as sign
    from pieces
    union all
    select
        line_item_key, window_size, window_start, window_end, timezone, window_usage,
        window_event_count, period_index, piece_end as instant, 1 as sign
    from pieces
),

{#- One grouping gives each point its cost and its window's columns (the same on every piece
    of a window, so grouping by them changes nothing): joining the points back to their
    windows, or taking max() of a text column, holds memory DuckDB cannot spill, and at 10
    million events it does not fit the memory limit. -#}
point_costs as (
    select
        piece_ends.line_item_key,
        piece_ends.window_size,
        piece_ends.window_start,
        piece_ends.window_end,
        piece_ends.timezone,
        piece_ends.window_usage,
        piece_ends.window_event_count,
        sum(piece_ends.sign * costs.charged_cost_rounded) as cost
    from piece_ends
    inner join instant_costs as costs
        on piece_ends.line_item_key = costs.line_item_key
        and piece_ends.period_index = costs.period_index
        and piece_ends.instant = costs.instant
    group by
        piece_ends.line_item_key, piece_ends.window_size, piece_ends.window_start,
        piece_ends.window_end, piece_ends.timezone, piece_ends.window_usage,
        piece_ends.window_event_count
),

final as (
    select
        line_items.tenant_id,
        line_items.environment_id,
        line_items.subscription_id,
        line_items.price_id,
        line_items.subscription_line_item_id,
        line_items.meter_id,
        line_items.external_customer_id,
        line_items.currency,
        point_costs.window_size,
        point_costs.window_start,
        point_costs.window_end,
        point_costs.timezone,
        point_costs.window_usage as usage,
        cast(point_costs.window_event_count as bigint) as event_count,
        cast(point_costs.cost as {{ mh_quantity_type() }}) as cost
    from point_costs
    inner join line_items
        on point_costs.line_item_key = line_items.line_item_key
)

select * from final
