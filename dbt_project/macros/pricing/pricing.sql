{#-
  Exact money (DESIGN 3 "Prices", models/pricing.py is the reference). Money and quantities
  are decimal(38, 12); every product of two numbers is rounded half away from zero to 12
  places, every cost once to the currency's precision. No float, no division of decimals
  (DuckDB divides decimals as double): quotients go through integer arithmetic.
-#}

{#- a × b rounded half away from zero to 12 places; null when |a × b| >= 10^25. -#}
{% macro mh_round_product(a, b) -%}
    {{ return(adapter.dispatch('mh_round_product', 'meterhouse')(a, b)) }}
{%- endmacro %}
{% macro duckdb__mh_round_product(a, b) -%}
    {#- decimal(38, 12) × decimal(38, 12) is decimal(38, 24), which holds |x| < 10^14: larger
        products split one factor into its integer part (exact at scale 12) and fraction -#}
    {%- set x = 'cast(' ~ a ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    {%- set y = 'cast(' ~ b ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    (case
        when abs(cast({{ x }} as double) * cast({{ y }} as double)) >= 1e25 then null
        when abs(cast({{ x }} as double) * cast({{ y }} as double)) < 1e13
            then cast({{ x }} * {{ y }} as {{ mh_quantity_type() }})
        when abs({{ y }}) < 1e13
            then cast(trunc({{ x }}) as decimal(38, 0)) * {{ y }}
                + cast(({{ x }} - trunc({{ x }})) * {{ y }} as {{ mh_quantity_type() }})
        else cast(trunc({{ y }}) as decimal(38, 0)) * {{ x }}
            + cast(({{ y }} - trunc({{ y }})) * {{ x }} as {{ mh_quantity_type() }})
    end)
{%- endmacro %}
{% macro postgres__mh_round_product(a, b) -%}
    (case when abs(cast({{ a }} as numeric) * cast({{ b }} as numeric)) < 1e25
        then cast(round(cast({{ a }} as numeric) * cast({{ b }} as numeric), 12)
            as {{ mh_quantity_type() }})
    end)
{%- endmacro %}


{#-
  numerator / denominator rounded half away from zero to 12 places, exactly: the numerator
  in units of 10^-12 is an integer, divided by the (positive integer) denominator with
  integer division and the remainder deciding the rounding.
-#}
{% macro mh_round_quotient(numerator, denominator) -%}
    {{ return(adapter.dispatch('mh_round_quotient', 'meterhouse')(numerator, denominator)) }}
{%- endmacro %}
{% macro duckdb__mh_round_quotient(numerator, denominator) -%}
    {%- set n = 'cast(' ~ numerator ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    {%- set units = '(cast(trunc(' ~ n ~ ') as hugeint) * 1000000000000 + cast((' ~ n
        ~ ' - trunc(' ~ n ~ ')) * 1000000000000 as hugeint))' -%}
    {%- set d = 'cast(' ~ denominator ~ ' as hugeint)' -%}
    (case when {{ units }} < 0 then -1 else 1 end
        * cast(
            abs({{ units }}) // {{ d }}
                + case when 2 * (abs({{ units }}) % {{ d }}) >= {{ d }} then 1 else 0 end
            as decimal(38, 0))
        * cast(0.000000000001 as {{ mh_quantity_type() }}))
{%- endmacro %}
{% macro postgres__mh_round_quotient(numerator, denominator) -%}
    {%- set n = 'cast(' ~ numerator ~ ' as ' ~ mh_quantity_type() ~ ')' -%}
    {%- set d = 'cast(' ~ denominator ~ ' as numeric)' -%}
    cast(sign({{ n }}) * div(abs({{ n }}) * 2000000000000 + {{ d }}, 2 * {{ d }})
        * 0.000000000001 as {{ mh_quantity_type() }})
{%- endmacro %}


{#- An amount rounded half away from zero to the currency's precision (a column, 0 to 4). -#}
{% macro mh_round_money(amount, precision) -%}
    {#- each branch cast: a case over decimals of different scales would narrow them all -#}
    (case {{ precision }}
        {%- for places in [0, 1, 3, 4] %}
        when {{ places }} then cast(round({{ amount }}, {{ places }}) as {{ mh_quantity_type() }})
        {%- endfor %}
        else cast(round({{ amount }}, 2) as {{ mh_quantity_type() }})
    end)
{%- endmacro %}


{#- An integer-valued decimal as an exact integer of unbounded-enough width. -#}
{% macro mh_exact_integer(value) -%}
    {{ return(adapter.dispatch('mh_exact_integer', 'meterhouse')(value)) }}
{%- endmacro %}
{% macro duckdb__mh_exact_integer(value) -%} cast({{ value }} as hugeint) {%- endmacro %}
{% macro postgres__mh_exact_integer(value) -%} cast({{ value }} as numeric) {%- endmacro %}

{#- floor(n / d) for an integer n and a positive integer d (integer division truncates). -#}
{% macro mh_floor_divide(n, d) -%}
    {{ return(adapter.dispatch('mh_floor_divide', 'meterhouse')(n, d)) }}
{%- endmacro %}
{% macro duckdb__mh_floor_divide(n, d) -%}
    (case when ({{ n }}) >= 0 then ({{ n }}) // ({{ d }})
        else -((-({{ n }}) + ({{ d }}) - 1) // ({{ d }})) end)
{%- endmacro %}
{% macro postgres__mh_floor_divide(n, d) -%}
    (case when ({{ n }}) >= 0 then div({{ n }}, {{ d }})
        else -div(-({{ n }}) + ({{ d }}) - 1, {{ d }}) end)
{%- endmacro %}

{#-
  Whole packages of `divide_by` units, exactly: ceil(q / d) = ceil(ceil(q) / d) and
  floor(q / d) = floor(floor(q) / d) for a positive integer d, so only integers are divided.
-#}
{% macro mh_packages(quantity, divide_by, package_round) -%}
    cast(case when {{ package_round }} = 'down'
        then {{ mh_floor_divide(mh_exact_integer('floor(' ~ quantity ~ ')'),
                                'cast(' ~ divide_by ~ ' as bigint)') }}
        else -({{ mh_floor_divide('-(' ~ mh_exact_integer('ceil(' ~ quantity ~ ')') ~ ')',
                                  'cast(' ~ divide_by ~ ' as bigint)') }})
    end as {{ mh_quantity_type() }})
{%- endmacro %}


{#-
  One price's contribution to C(q) from one of its tier rows (`tier` is null for prices
  without tiers); C(q) is the sum over the price's tier rows. Quantity 0 costs 0; TIERED
  charges nothing for q <= 0 (it touches no tier).
  VOLUME: all units at the tier with from_quantity < q <= up_to, plus its flat_amount.
  SLAB: each touched tier (q > from_quantity) its units at its unit_amount, plus its flat_amount.
-#}
{% macro mh_price_component(quantity, price, tier) -%}
    {%- set q = quantity -%}
    cast(case
        when {{ q }} = 0 then 0
        when {{ price }}.billing_model = 'FLAT_FEE'
            then {{ mh_round_product(price ~ '.amount', q) }}
        when {{ price }}.billing_model = 'PACKAGE'
            then {{ mh_round_product(price ~ '.amount',
                    mh_packages(q, price ~ '.divide_by', price ~ '.package_round')) }}
        when {{ price }}.tier_mode = 'VOLUME' then
            case when {{ q }} > {{ tier }}.from_quantity
                and ({{ tier }}.up_to is null or {{ q }} <= {{ tier }}.up_to)
                then {{ mh_round_product(tier ~ '.unit_amount', q) }}
                    + coalesce({{ tier }}.flat_amount, 0)
                else 0
            end
        when {{ price }}.tier_mode = 'SLAB' then
            case when {{ q }} > {{ tier }}.from_quantity
                then {{ mh_round_product(tier ~ '.unit_amount',
                    '(case when ' ~ tier ~ '.up_to is not null and ' ~ q ~ ' > ' ~ tier
                    ~ '.up_to then ' ~ tier ~ '.up_to else ' ~ q ~ ' end - ' ~ tier
                    ~ '.from_quantity)') }}
                    + coalesce({{ tier }}.flat_amount, 0)
                else 0
            end
    end as {{ mh_quantity_type() }})
{%- endmacro %}


{#-
  The body of a select pricing the distinct (tenant, environment, price, quantity) rows of
  the relation `quantities`: one row each with `cost` = C(quantity), unrounded. A cost that
  cannot be computed (out of range) is null, never a partial sum.
-#}
{% macro mh_price_quantities(quantities, prices, tiers) -%}
    select
        tenant_id,
        environment_id,
        price_id,
        quantity,
        cast(case when count(*) = count(component) then sum(component) end
            as {{ mh_quantity_type() }}) as cost
    from (
        select
            priced.tenant_id,
            priced.environment_id,
            priced.price_id,
            priced.quantity,
            {{ mh_price_component('priced.quantity', 'price', 'tier') }} as component
        from (
            select distinct tenant_id, environment_id, price_id, quantity
            from {{ quantities }}
            where quantity is not null
        ) as priced
        inner join {{ prices }} as price
            on priced.tenant_id = price.tenant_id
            and priced.environment_id = price.environment_id
            and priced.price_id = price.price_id
        left join {{ tiers }} as tier
            on priced.tenant_id = tier.tenant_id
            and priced.environment_id = tier.environment_id
            and priced.price_id = tier.price_id
    ) as components
    group by tenant_id, environment_id, price_id, quantity
{%- endmacro %}


{#- g(x): a usage cost as charged under a commitment of `amount` (null: no commitment). -#}
{% macro mh_committed_charge(cost, amount, overage_factor) -%}
    cast(case
        when {{ amount }} is null or {{ cost }} < {{ amount }} then {{ cost }}
        else {{ amount }}
            + {{ mh_round_product('(' ~ cost ~ ' - ' ~ amount ~ ')', overage_factor) }}
    end as {{ mh_quantity_type() }})
{%- endmacro %}
