-- Usage figures: rolled up every minute by each instance's usage task (one at a time,
-- by an advisory lock), read without scanning anything large.

-- The advisory lock class of the roll-up: one instance at a time.
create function hark_api.usage_lock_class()
returns integer
language sql
immutable
as $$ select 1954 $$;

-- The smallest UUIDv7 of a moment: message ids are UUIDv7 (made by the server), so a
-- day's messages are a range of the primary key.
create function hark_api.uuid_v7_floor(p_at timestamptz)
returns uuid
language sql
immutable
as $$
    select (lpad(to_hex(floor(extract(epoch from p_at) * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
$$;

-- Rolls up today and yesterday (UTC) for every live tenant: the messages written since
-- the last roll-up, their senders and the users connected now as active, and the
-- connected users as a sample of the day's peak. Skipped while another instance rolls
-- up. Answers how many tenants were rolled up (a JSON number).
create function hark_api.usage_rollup()
returns jsonb
language plpgsql
as $$
declare
    v_tenant_id uuid;
    v_day date;
    v_from uuid;
    v_to uuid;
    v_count bigint;
    v_last uuid;
    v_connected integer;
    v_tenants integer := 0;
    v_today date := (now() at time zone 'utc')::date;
begin
    if not pg_try_advisory_xact_lock(hark_api.usage_lock_class(), 0) then
        return to_jsonb(0);
    end if;
    perform hark_api.enter_operator();
    for v_tenant_id in select id from hark.tenants where deleted_at is null order by id loop
        perform hark_api.enter(v_tenant_id, null);
        foreach v_day in array array[v_today - 1, v_today] loop
            insert into hark.tenant_usage_daily (tenant_id, day) values (v_tenant_id, v_day)
            on conflict do nothing;
            select greatest(counted_to, hark_api.uuid_v7_floor(v_day::timestamp at time zone 'utc'))
            into v_from
            from hark.tenant_usage_daily where tenant_id = v_tenant_id and day = v_day;
            v_to := hark_api.uuid_v7_floor((v_day + 1)::timestamp at time zone 'utc');
            -- PostgreSQL 15 has no max(uuid): the last id is read apart, from the index.
            select count(*) into v_count
            from hark.messages where tenant_id = v_tenant_id and id > v_from and id < v_to;
            select id into v_last
            from hark.messages where tenant_id = v_tenant_id and id > v_from and id < v_to
            order by id desc limit 1;
            insert into hark.tenant_active_users (tenant_id, day, user_id)
            select distinct v_tenant_id, v_day, sender_id from hark.messages
            where tenant_id = v_tenant_id and id > v_from and id < v_to and sender_id is not null
            on conflict do nothing;
            update hark.tenant_usage_daily
            set messages = messages + v_count, counted_to = coalesce(v_last, counted_to)
            where tenant_id = v_tenant_id and day = v_day;
        end loop;
        select count(distinct user_id) into v_connected
        from hark.user_connections where tenant_id = v_tenant_id and seen_until > now();
        insert into hark.tenant_active_users (tenant_id, day, user_id)
        select distinct v_tenant_id, v_today, user_id from hark.user_connections
        where tenant_id = v_tenant_id and seen_until > now()
        on conflict do nothing;
        update hark.tenant_usage_daily
        set peak_connected_users = greatest(peak_connected_users, v_connected)
        where tenant_id = v_tenant_id and day = v_today;
        v_tenants := v_tenants + 1;
    end loop;
    return to_jsonb(v_tenants);
end
$$;

-- A tenant's usage figures: the last 30 UTC days (newest first) and the users active
-- in them. The caller has entered the tenant.
create function hark_api.usage_figures(p_tenant_id uuid)
returns jsonb
language plpgsql
stable
as $$
begin
    return (select jsonb_build_object(
            'days', coalesce((
                select jsonb_agg(jsonb_build_object(
                    'day', d.day, 'messages', d.messages,
                    'active_users', (select count(*) from hark.tenant_active_users a
                                     where a.tenant_id = p_tenant_id and a.day = d.day),
                    'peak_connected_users', d.peak_connected_users) order by d.day desc)
                from hark.tenant_usage_daily d
                where d.tenant_id = p_tenant_id and d.day > (now() at time zone 'utc')::date - 30), '[]'::jsonb),
            'monthly_active_users', hark_api.usage_summary(p_tenant_id) -> 'monthly_active_users'));
end
$$;

-- The operator's view of a tenant's usage: its counts against its quotas and its
-- figures.
create function hark_api.operator_tenant_usage(p_tenant_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, false);
    perform hark_api.enter(p_tenant_id, null);
    return hark_api.quota_usage(p_tenant_id) || hark_api.usage_figures(p_tenant_id);
end
$$;

-- What each table of the schema takes on disk (with its indexes and TOAST), for the
-- operator: every tenant together, from the catalog, without reading a row.
create function hark_api.operator_storage()
returns jsonb
language sql
stable
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
               'table', c.relname,
               'bytes', pg_total_relation_size(c.oid),
               'rows_estimate', greatest(c.reltuples, 0)::bigint) order by pg_total_relation_size(c.oid) desc), '[]'::jsonb)
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'hark' and c.relkind in ('r', 'p')
$$;

-- The p_limit live tenants with the most messages today (UTC), with today's rolled-up
-- figures and their monthly active users, for the per-tenant metrics: a bounded label
-- set, however many tenants there are.
create function hark_api.usage_top_tenants(p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_today date := (now() at time zone 'utc')::date;
    v_top record;
    v_items jsonb := '[]';
begin
    perform hark_api.enter_operator();
    -- The busiest first, then each one's figures, one tenant at a time: on Citus a
    -- tenant's rows are on its worker, and a query may not reach into them from rows
    -- of another query's result.
    for v_top in
        select t.id, t.slug, coalesce(d.messages, 0) as messages,
               coalesce(d.peak_connected_users, 0) as peak_connected_users
        from hark.tenants t
        left join hark.tenant_usage_daily d on d.tenant_id = t.id and d.day = v_today
        where t.deleted_at is null
        order by 3 desc, t.slug
        limit p_limit
    loop
        v_items := v_items || jsonb_build_object(
            'slug', v_top.slug,
            'messages_today', v_top.messages,
            'active_users_today', (select count(*) from hark.tenant_active_users a
                                   where a.tenant_id = v_top.id and a.day = v_today),
            'peak_connected_users_today', v_top.peak_connected_users,
            'monthly_active_users', hark_api.usage_summary(v_top.id) -> 'monthly_active_users');
    end loop;
    return v_items;
end
$$;
