with source as (
    select * from {{ source('meterhouse', 'calendar_buckets') }}
)

select timezone, anchor_key, window_size, hour_start, bucket_start, bucket_end
from source
