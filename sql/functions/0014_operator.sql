-- The operator's API: every tenant, listed, looked at, suspended, resumed, deleted and
-- purged (its quotas are in 0013_quotas.sql, its usage in 0018_usage.sql). The server
-- calls these only after checking the operator key (src/api/operator.rs), from the
-- command line (`hark tenant …`) or from its background tasks; they trust their
-- caller.

-- Enters the operator's context: no tenant, every tenant's row visible.
create function hark_api.enter_operator()
returns void
language sql
as $$
    select hark_api.enter(null, null), hark_api.set_local('hark.operator', 'on');
$$;

-- A tenant as the operator sees it: the tenant's own view, its suspension, its quotas
-- (each the tenant's own or the default; null: none), its rolled-up usage and, once
-- deleted, how far the purge of its rows went.
create function hark_api.operator_tenant_json(p_tenant hark.tenants)
returns jsonb
language sql
stable
as $$
    select hark_api.tenant_json(p_tenant) || jsonb_build_object(
        'suspended', p_tenant.suspended_at is not null,
        'suspended_at', p_tenant.suspended_at,
        'suspended_reason', p_tenant.suspended_reason,
        'quotas', hark_api.quotas_json(p_tenant.id),
        'deleted_at', p_tenant.deleted_at,
        'purged_rows', p_tenant.purged_rows,
        'purged_at', p_tenant.purged_at,
        'usage', hark_api.usage_summary(p_tenant.id))
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
    select coalesce(jsonb_agg(hark_api.operator_tenant_json(row(page.*)::hark.tenants) order by page.slug), '[]'::jsonb),
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

-- The tenant with this id, live only unless p_deleted_too, locked when p_lock (404
-- tenant_not_found otherwise).
create function hark_api.operator_tenant_row(p_tenant_id uuid, p_lock boolean, p_deleted_too boolean default false)
returns hark.tenants
language plpgsql
as $$
declare
    v_tenant hark.tenants;
begin
    if p_lock then
        select * into v_tenant from hark.tenants
        where id = p_tenant_id and (p_deleted_too or deleted_at is null) for no key update;
    else
        select * into v_tenant from hark.tenants
        where id = p_tenant_id and (p_deleted_too or deleted_at is null);
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
    return hark_api.operator_tenant_json(hark_api.operator_tenant_row(p_tenant_id, false, true));
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
    v_now timestamptz := now();
    v_tenant hark.tenants;
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, true);
    update hark.tenants
    set suspended_at = coalesce(suspended_at, v_now), suspended_reason = p_reason, updated_at = v_now
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
    v_now timestamptz := now();
    v_tenant hark.tenants;
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, true);
    update hark.tenants
    set suspended_at = null, suspended_reason = null, updated_at = v_now
    where id = p_tenant_id
    returning * into v_tenant;
    return hark_api.operator_tenant_json(v_tenant);
end
$$;

-- Deletes a tenant: it is refused at once everywhere (hark_api.tenant_mark_deleted),
-- and every instance's purge then removes its rows in the background.
create function hark_api.operator_tenant_delete(p_tenant_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_tenant hark.tenants;
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, true);
    perform hark_api.tenant_mark_deleted(p_tenant_id);
    return hark_api.operator_tenant_json(hark_api.operator_tenant_row(p_tenant_id, false, true));
end
$$;

-- The tables that hold tenants' rows, in the order a purge empties them: each before
-- the tables it references, read from the catalog, so that a table added later is
-- purged with no change here.
create function hark_api.purge_order()
returns text[]
language sql
stable
as $$
    with recursive tables as (
        select c.oid, c.relname
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'hark' and c.relkind in ('r', 'p')
          and exists (select from pg_attribute a
                      where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
    ), edges as (
        select conrelid as child, confrelid as parent
        from pg_constraint
        where contype = 'f' and conrelid <> confrelid
          and conrelid in (select oid from tables) and confrelid in (select oid from tables)
    ), depth (oid, depth) as (
        select oid, 0 from tables
        union all
        select edges.parent, depth.depth + 1 from depth join edges on edges.child = depth.oid
    )
    select array_agg(relname order by depth, relname)
    from (select tables.relname, max(depth.depth) as depth
          from tables join depth on depth.oid = tables.oid
          group by tables.relname) ordered
$$;

-- Deletes up to p_batch rows of a deleted tenant, from the first table in purge order
-- that has some left (messages room by room, newest first, so that no message goes
-- before a reply to it); answers how many, 0 when none is left. It runs as the tables' owner
-- (SECURITY DEFINER): the audit log is append-only for the serving role, and a
-- tenant's purge is the one thing that deletes from it; it touches deleted tenants
-- only.
create function hark_api.purge_tenant_rows(p_tenant_id uuid, p_batch integer)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_table text;
    v_count integer;
    v_room_id uuid;
begin
    if not exists (select 1 from hark.tenants where id = p_tenant_id and deleted_at is not null) then
        return 0;
    end if;
    foreach v_table in array hark_api.purge_order() loop
        if v_table = 'messages' then
            -- A reply is in its message's room: one room at a time, newest first, read
            -- from the room's (room_id, seq) index rather than by sorting every message
            -- the tenant has left at each batch.
            select room_id into v_room_id from hark.messages where tenant_id = p_tenant_id limit 1;
            delete from hark.messages
            where tenant_id = p_tenant_id and room_id = v_room_id and seq in (
                select seq from hark.messages where tenant_id = p_tenant_id and room_id = v_room_id
                order by seq desc limit p_batch);
        else
            execute format(
                'delete from hark.%I where tenant_id = $1 and ctid = any(array('
                'select ctid from hark.%I where tenant_id = $1 limit $2))', v_table, v_table)
            using p_tenant_id, p_batch;
        end if;
        get diagnostics v_count = row_count;
        if v_count > 0 then
            return v_count;
        end if;
    end loop;
    return 0;
end
$$;

-- Purges a bounded batch of the deleted tenant deleted first and not purged yet (one
-- another instance is purging is skipped, and counts as work left: 1) in one short
-- transaction; once it has no rows left its row records that the purge finished, and
-- stays, keeping its slug reserved. Answers how many rows went (a JSON number): 0
-- when no tenant is left to purge.
create function hark_api.purge_tenants(p_batch integer)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_tenant_id uuid;
    v_count integer;
begin
    perform hark_api.enter_operator();
    select id into v_tenant_id from hark.tenants
    where deleted_at is not null and purged_at is null
    order by deleted_at
    limit 1
    for no key update skip locked;
    if v_tenant_id is null then
        -- A tenant another instance is purging at this moment is work left: this
        -- instance keeps coming back (after its pause) rather than leaving the rest to
        -- the next sweep, in case the other instance stops first.
        return to_jsonb(case when exists (select 1 from hark.tenants
                                          where deleted_at is not null and purged_at is null)
                             then 1 else 0 end);
    end if;
    -- The tenant's own context: its deleted rooms too (hark.purging).
    perform hark_api.enter(v_tenant_id, null), hark_api.set_local('hark.purging', 'on');
    v_count := hark_api.purge_tenant_rows(v_tenant_id, p_batch);
    update hark.tenants
    set purged_rows = purged_rows + v_count,
        purged_at = case when v_count = 0 then v_now end
    where id = v_tenant_id;
    return to_jsonb(greatest(v_count, 1));
end
$$;
