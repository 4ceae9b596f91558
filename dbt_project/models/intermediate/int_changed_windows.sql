{#-
  The windows of every size (MINUTE included) in each customer's calendar that contain a
  minute a batch run changed (int_event_changes): fct_meter_usage recomputes exactly these.
  Empty in a full build. Grain: tenant × environment × customer × window_size × window_start.
-#}
with changed_minutes as (
    select distinct tenant_id, environment_id, external_customer_id, minute_start
    from {{ ref('int_event_changes') }}
),

customer_calendars as (
    select * from {{ ref('stg_customer_usage_calendars') }}
),

calendar as (
    select * from {{ ref('stg_calendar_buckets') }}
),

minutes_with_calendar as (
    select
        changed_minutes.*,
        coalesce(customer_calendars.timezone, 'UTC') as timezone,
        coalesce(customer_calendars.month_anchor_key, '') as month_anchor_key,
        {{ mh_trunc_hour('changed_minutes.minute_start') }} as hour_start
    from changed_minutes
    left join customer_calendars
        on changed_minutes.tenant_id = customer_calendars.tenant_id
        and changed_minutes.environment_id = customer_calendars.environment_id
        and changed_minutes.external_customer_id = customer_calendars.external_customer_id
),

final as (
    select
        tenant_id,
        environment_id,
        external_customer_id,
        'MINUTE' as window_size,
        minute_start as window_start,
        {{ mh_add_minute('minute_start') }} as window_end
    from minutes_with_calendar

    union

    select
        minutes.tenant_id,
        minutes.environment_id,
        minutes.external_customer_id,
        calendar.window_size,
        calendar.bucket_start as window_start,
        calendar.bucket_end as window_end
    from minutes_with_calendar as minutes
    inner join calendar
        on {{ mh_minute_in_bucket('minutes', 'calendar') }}
)

select * from final
