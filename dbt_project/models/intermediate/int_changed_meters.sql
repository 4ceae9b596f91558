{#-
  Meters whose definition differs from the one the last completed build used (added,
  changed or removed): a batch run recomputes their whole history. Empty in a full build.
  The orchestrator records the definitions it built (source build_meters) after each
  successful build. Grain: tenant × environment × meter.
-#}
/* depends on {{ source('meterhouse', 'build_meters') }} */
with meters as (
    select tenant_id, environment_id, meter_id, definition_hash
    from {{ source('meterhouse', 'catalog_meters') }}
),

{% if mh_batch_run() %}
built as (
    select tenant_id, environment_id, meter_id, definition_hash
    from {{ source('meterhouse', 'build_meters') }}
),

final as (
    select
        coalesce(meters.tenant_id, built.tenant_id) as tenant_id,
        coalesce(meters.environment_id, built.environment_id) as environment_id,
        coalesce(meters.meter_id, built.meter_id) as meter_id
    from meters
    full outer join built
        on meters.tenant_id = built.tenant_id
        and meters.environment_id = built.environment_id
        and meters.meter_id = built.meter_id
    where meters.meter_id is null
        or built.meter_id is null
        or meters.definition_hash <> built.definition_hash
)
{% else %}
final as (
    select tenant_id, environment_id, meter_id
    from meters
    where 1 = 0
)
{% endif %}

select * from final
