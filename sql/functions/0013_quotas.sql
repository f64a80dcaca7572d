-- Quotas: how many users, rooms, members per room and webhook endpoints a tenant may
-- have. Each is the tenant's own (set by the operator) or the configured default, or
-- none. A creation past one is refused with 403 quota_exceeded, the quota's name as
-- the error's field, and writes nothing.

-- The quotas' names, in the order they are shown.
create function hark_api.quota_names()
returns text[]
language sql
immutable
as $$ select array['users', 'rooms', 'members_per_room', 'webhook_endpoints'] $$;

-- Replaces the configured defaults (an object of quota names to numbers or null).
create function hark_api.quota_defaults_set(p_quotas jsonb)
returns void
language plpgsql
as $$
begin
    perform hark_api.enter(null, null);
    insert into hark.quota_defaults (singleton, quotas) values (true, p_quotas)
    on conflict (singleton) do update set quotas = excluded.quotas;
end
$$;

-- The tenant's quota p_name, or null when there is none.
create function hark_api.quota_of(p_tenant_id uuid, p_name text)
returns bigint
language sql
stable
as $$
    select coalesce(
        (select (quotas ->> p_name)::bigint from hark.tenants where id = p_tenant_id),
        (select (quotas ->> p_name)::bigint from hark.quota_defaults))
$$;

-- Every quota of the tenant as an object (null: none).
create function hark_api.quotas_json(p_tenant_id uuid)
returns jsonb
language sql
stable
as $$
    select jsonb_object_agg(name, hark_api.quota_of(p_tenant_id, name))
    from unnest(hark_api.quota_names()) name
$$;

-- What the tenant has of a counted quota now.
create function hark_api.quota_used(p_tenant_id uuid, p_name text)
returns bigint
language plpgsql
stable
as $$
begin
    return case p_name
        when 'users' then (select count(*) from hark.users where tenant_id = p_tenant_id and deleted_at is null)
        when 'rooms' then (select count(*) from hark.rooms where tenant_id = p_tenant_id and deleted_at is null)
        when 'webhook_endpoints' then (select count(*) from hark.webhooks where tenant_id = p_tenant_id)
    end;
end
$$;

create function hark_api.quota_exceeded(p_name text, p_quota bigint)
returns void
language plpgsql
as $$
begin
    perform hark_api.fail(403, 'quota_exceeded',
        format('The tenant''s quota of %s %s is reached', p_quota, replace(p_name, '_', ' ')), p_name);
end
$$;

-- Refuses the creation of p_adding more of a tenant-wide quota's things (users, rooms,
-- webhook endpoints) past the quota. The count is taken under the tenant row's lock,
-- FOR NO KEY UPDATE (which the foreign-key checks of other writes do not wait for), so
-- that concurrent creations are counted one after the other and none gets past the
-- quota; a tenant without that quota takes no lock and counts nothing.
create function hark_api.require_quota(p_tenant_id uuid, p_name text, p_adding integer)
returns void
language plpgsql
as $$
declare
    v_quota bigint := hark_api.quota_of(p_tenant_id, p_name);
begin
    if v_quota is null then
        return;
    end if;
    perform from hark.tenants where id = p_tenant_id for no key update;
    if hark_api.quota_used(p_tenant_id, p_name) + p_adding > v_quota then
        perform hark_api.quota_exceeded(p_name, v_quota);
    end if;
end
$$;

-- Refuses one more member of a room past the tenant's members_per_room quota. Every
-- caller holds the room's lock (or created the room), so the count holds.
create function hark_api.require_member_quota(p_room_id uuid)
returns void
language plpgsql
as $$
declare
    v_tenant_id uuid := hark_api.current_tenant_id();
    v_quota bigint := hark_api.quota_of(v_tenant_id, 'members_per_room');
begin
    if v_quota is not null
       and (select count(*) from hark.room_members where tenant_id = v_tenant_id and room_id = p_room_id) >= v_quota then
        perform hark_api.quota_exceeded('members_per_room', v_quota);
    end if;
end
$$;

-- A tenant's rolled-up usage in brief, as the operator's list shows it: today's
-- messages (UTC) and the users active in the last 30 days (hark_api.usage_rollup).
create function hark_api.usage_summary(p_tenant_id uuid)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'messages_today', coalesce((
            select messages from hark.tenant_usage_daily
            where tenant_id = p_tenant_id and day = (now() at time zone 'utc')::date), 0),
        'monthly_active_users', (
            select count(distinct user_id) from hark.tenant_active_users
            where tenant_id = p_tenant_id and day > (now() at time zone 'utc')::date - 30))
$$;

-- The tenant's counts against its quotas. The caller has entered the tenant.
create function hark_api.quota_usage(p_tenant_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_usage jsonb := '{}'::jsonb;
    v_name text;
begin
    foreach v_name in array hark_api.quota_names() loop
        v_usage := v_usage || jsonb_build_object(v_name, jsonb_build_object(
            'used', case when v_name = 'members_per_room' then
                        (select max(n) from (select count(*) n from hark.room_members
                                             where tenant_id = p_tenant_id group by room_id) rooms)
                    else hark_api.quota_used(p_tenant_id, v_name) end,
            'quota', hark_api.quota_of(p_tenant_id, v_name)));
    end loop;
    return v_usage;
end
$$;

-- The tenant's usage, for its owners and admins (and their keys): its counts against
-- its quotas and its figures (hark_api.usage_figures).
create function hark_api.tenant_usage(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    return hark_api.quota_usage(p_tenant_id) || hark_api.usage_figures(p_tenant_id);
end
$$;

-- Sets the tenant's own quotas: each name given with a number takes it, with null goes
-- back to the default; names not given stay.
create function hark_api.operator_tenant_quotas(p_tenant_id uuid, p_quotas jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_tenant hark.tenants;
    v_name text;
begin
    perform hark_api.enter_operator();
    perform hark_api.operator_tenant_row(p_tenant_id, true);
    for v_name in select jsonb_object_keys(p_quotas) loop
        if not v_name = any(hark_api.quota_names()) then
            perform hark_api.fail(422, 'invalid_quota', format('There is no quota named %s', v_name), 'quotas');
        end if;
    end loop;
    update hark.tenants
    set quotas = jsonb_strip_nulls(quotas || p_quotas), updated_at = now()
    where id = p_tenant_id
    returning * into v_tenant;
    return hark_api.operator_tenant_json(v_tenant);
end
$$;
