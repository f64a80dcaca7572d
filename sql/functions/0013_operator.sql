-- The operator's API: every tenant, listed, looked at, suspended and resumed. The
-- server calls these only after checking the operator key (src/api/operator.rs) or
-- from the command line (`hark tenant …`); they trust their caller, like the purge.

-- Enters the operator's context: no tenant, every tenant's row visible.
create function hark_api.enter_operator()
returns void
language sql
as $$
    select hark_api.enter(null, null), set_config('hark.operator', 'on', true);
$$;

-- A tenant as the operator sees it: the tenant's own view and its suspension.
create function hark_api.operator_tenant_json(p_tenant hark.tenants)
returns jsonb
language sql
stable
as $$
    select hark_api.tenant_json(p_tenant) || jsonb_build_object(
        'suspended', p_tenant.suspended_at is not null,
        'suspended_at', p_tenant.suspended_at,
        'suspended_reason', p_tenant.suspended_reason)
$$;

-- Live tenants in slug order, after the slug p_after, whose slug starts with p_query
-- when given. A full page has a cursor, as every list of the API.
create function hark_api.operator_tenant_list(p_after text, p_query text, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_last text;
    v_count integer;
begin
    perform hark_api.enter_operator();
    perform hark_api.check_limit(p_limit, 200);
    select coalesce(jsonb_agg(hark_api.operator_tenant_json(page) order by page.slug), '[]'::jsonb),
           max(page.slug),
           count(*)
    into v_items, v_last, v_count
    from (
        select t.* from hark.tenants t
        where t.deleted_at is null
          and (p_after is null or t.slug > lower(p_after))
          and (p_query is null or starts_with(t.slug, lower(p_query)))
        order by t.slug
        limit p_limit
    ) page;
    return jsonb_build_object(
        'items', v_items,
        'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

-- The live tenant with this id, locked when p_lock (404 tenant_not_found otherwise).
create function hark_api.operator_tenant_row(p_tenant_id uuid, p_lock boolean)
returns hark.tenants
language plpgsql
as $$
declare
    v_tenant hark.tenants;
begin
    if p_lock then
        select * into v_tenant from hark.tenants
        where id = p_tenant_id and deleted_at is null for update;
    else
        select * into v_tenant from hark.tenants
        where id = p_tenant_id and deleted_at is null;
    end if;
    if v_tenant.id is null then
        perform hark_api.fail(404, 'tenant_not_found', 'No tenant has this id');
    end if;
    return v_tenant;
end
$$;

create function hark_api.operator_tenant_get(p_tenant_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_operator();
    return hark_api.operator_tenant_json(hark_api.operator_tenant_row(p_tenant_id, false));
end
$$;

-- Suspends a tenant: from this statement's commit on, its tokens, keys and logins are
-- refused, and every instance ends its streams (hark_revocations). Suspending a
-- suspended tenant changes only the reason.
create function hark_api.operator_tenant_suspend(p_tenant_id uuid, p_reason text)
returns jsonb
language plpgsql
as $$
declare
    v_tenant hark.tenants;
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, true);
    update hark.tenants
    set suspended_at = coalesce(suspended_at, now()), suspended_reason = p_reason, updated_at = now()
    where id = p_tenant_id
    returning * into v_tenant;
    perform hark_api.announce_revocation(p_tenant_id, null, null);
    return hark_api.operator_tenant_json(v_tenant);
end
$$;

-- Resumes a suspended tenant: its unexpired tokens and its keys work again.
create function hark_api.operator_tenant_resume(p_tenant_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_tenant hark.tenants;
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, true);
    update hark.tenants
    set suspended_at = null, suspended_reason = null, updated_at = now()
    where id = p_tenant_id
    returning * into v_tenant;
    return hark_api.operator_tenant_json(v_tenant);
end
$$;
