{#-
  The window points of each line item's meter and customer (fct_meter_usage: every window
  size, the customer's calendar, only windows with events), cut into their pieces inside the
  line item's billing periods. A point's cost is the sum of its pieces' costs (DESIGN 3b.8).
  Grain: line_item_key × window_size × window_start × period_index.
-#}
with periods as (
    select * from {{ ref('int_line_item_periods') }}
),

usage_windows as (
    select * from {{ ref('fct_meter_usage') }}
),

final as (
    select
        periods.line_item_key,
        usage_windows.window_size,
        usage_windows.window_start,
        usage_windows.window_end,
        usage_windows.timezone,
        usage_windows.value as window_usage,
        usage_windows.event_count as window_event_count,
        periods.period_index,
        periods.segment_index,
        case when usage_windows.window_start > periods.period_start
            then usage_windows.window_start else periods.period_start end as piece_start,
        case when usage_windows.window_end < periods.period_end
            then usage_windows.window_end else periods.period_end end as piece_end
    from periods
    inner join usage_windows
        on periods.tenant_id = usage_windows.tenant_id
        and periods.environment_id = usage_windows.environment_id
        and periods.meter_id = usage_windows.meter_id
        and periods.external_customer_id = usage_windows.external_customer_id
        and usage_windows.window_start < periods.period_end
        and usage_windows.window_end > periods.period_start
)

select * from final
