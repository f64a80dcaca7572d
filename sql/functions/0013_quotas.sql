-- Quotas: how many users, rooms, members per room and webhook endpoints a tenant may
-- have, how many messages and bytes of attachment metadata it may write per UTC day,
-- and how many connections its users may hold at once. Each is the tenant's own (set
-- by the operator) or the configured default, or none. A creation past one is refused
-- with 403 quota_exceeded, a send or connection past one with 429 quota_exceeded, the
-- quota's name as the error's field, and writes nothing.

-- The quotas' names, in the order they are shown.
create function hark_api.quota_names()
returns text[]
language sql
immutable
as $$
    select array['users', 'rooms', 'members_per_room', 'webhook_endpoints', 'messages_per_day',
                 'attachment_bytes_per_day', 'connections']
$$;

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
language plpgsql
stable
as $$
begin
    return (select coalesce(
            (select (quotas ->> p_name)::bigint from hark.tenants where id = p_tenant_id),
            (select (quotas ->> p_name)::bigint from hark.quota_defaults)));
end
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
        when 'messages_per_day' then coalesce(
            (select messages from hark.tenant_send_counts
             where tenant_id = p_tenant_id and day = (now() at time zone 'utc')::date),
            (select messages from hark.tenant_usage_daily
             where tenant_id = p_tenant_id and day = (now() at time zone 'utc')::date), 0)
        when 'attachment_bytes_per_day' then coalesce(
            (select attachment_bytes from hark.tenant_send_counts
             where tenant_id = p_tenant_id and day = (now() at time zone 'utc')::date), 0)
        when 'connections' then hark_api.connections_of(p_tenant_id, null)
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

-- What the tenant may still write today (UTC) under its send quotas, as
-- {"tenant_id", "messages_left", "attachment_bytes_left"} (null where there is no such
-- quota), or null when it has neither quota: then sends count nothing and take no
-- lock. With one, today's counter row is made (from the day's rolled-up message
-- figure) and locked, so that concurrent writers of the tenant count one after the
-- other; the writer adds what it wrote (hark_api.send_counted).
create function hark_api.send_allowance(p_tenant_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_messages bigint := hark_api.quota_of(p_tenant_id, 'messages_per_day');
    v_bytes bigint := hark_api.quota_of(p_tenant_id, 'attachment_bytes_per_day');
    v_today date := (now() at time zone 'utc')::date;
    v_count hark.tenant_send_counts;
    v_counted bigint;
begin
    if v_messages is null and v_bytes is null then
        return null;
    end if;
    -- Read first: Citus takes no subqueries in an INSERT's VALUES.
    v_counted := coalesce((select messages from hark.tenant_usage_daily
                           where tenant_id = p_tenant_id and day = v_today), 0);
    insert into hark.tenant_send_counts (tenant_id, day, messages)
    values (p_tenant_id, v_today, v_counted)
    on conflict do nothing;
    select * into v_count from hark.tenant_send_counts
    where tenant_id = p_tenant_id and day = v_today
    for update;
    return jsonb_build_object(
        'tenant_id', p_tenant_id,
        'messages_left', v_messages - v_count.messages,
        'attachment_bytes_left', v_bytes - v_count.attachment_bytes);
end
$$;

-- Where a send's p_pending (see hark_api.message_check) holds the tenant's allowance.
create function hark_api.allowance_key(p_tenant_id uuid)
returns text
language sql
immutable
as $$ select 'send_allowance/' || p_tenant_id $$;

-- What a lone send (not batched) has pending: the tenant's allowance, when it has send
-- quotas. Called under the room's lock, as the batch takes it after its rooms'.
create function hark_api.lone_send_pending(p_tenant_id uuid)
returns jsonb
language sql
as $$
    select jsonb_strip_nulls(jsonb_build_object(hark_api.allowance_key(p_tenant_id),
                                                hark_api.send_allowance(p_tenant_id)))
$$;

-- The bytes of attachment metadata a message writes (its attachment's JSON text).
create function hark_api.attachment_bytes(p_attachment jsonb)
returns bigint
language sql
immutable
as $$ select coalesce(octet_length(p_attachment::text), 0)::bigint $$;

-- Refuses a message past the tenant's send quotas (p_allowance as
-- hark_api.send_allowance answers it, less what was accepted since): 429
-- quota_exceeded, the quota's name as the field.
create function hark_api.require_send_allowance(p_allowance jsonb, p_attachment jsonb)
returns void
language plpgsql
as $$
begin
    if (p_allowance ->> 'messages_left')::bigint < 1 then
        perform hark_api.fail(429, 'quota_exceeded',
            format('The tenant''s quota of %s messages per day (UTC) is reached',
                   hark_api.quota_of((p_allowance ->> 'tenant_id')::uuid, 'messages_per_day')),
            'messages_per_day');
    end if;
    if (p_allowance ->> 'attachment_bytes_left')::bigint < hark_api.attachment_bytes(p_attachment) then
        perform hark_api.fail(429, 'quota_exceeded',
            format('The tenant''s quota of %s bytes of attachment metadata per day (UTC) is reached',
                   hark_api.quota_of((p_allowance ->> 'tenant_id')::uuid, 'attachment_bytes_per_day')),
            'attachment_bytes_per_day');
    end if;
end
$$;

-- The allowance left after a message with p_attachment was accepted.
create function hark_api.send_allowance_after(p_allowance jsonb, p_attachment jsonb)
returns jsonb
language sql
immutable
as $$
    select p_allowance || jsonb_build_object(
        'messages_left', (p_allowance ->> 'messages_left')::bigint - 1,
        'attachment_bytes_left', (p_allowance ->> 'attachment_bytes_left')::bigint
                                 - hark_api.attachment_bytes(p_attachment))
$$;

-- Adds what a writer wrote to today's counter of the tenant of p_allowance (taken
-- and locked by hark_api.send_allowance in the same transaction).
create function hark_api.send_counted(p_allowance jsonb, p_messages bigint, p_attachment_bytes bigint)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
begin
    update hark.tenant_send_counts
        set messages = messages + p_messages, attachment_bytes = attachment_bytes + p_attachment_bytes
        where tenant_id = (p_allowance ->> 'tenant_id')::uuid and day = (v_now at time zone 'utc')::date;
end
$$;

-- The connections the tenant's users hold, as the instances last recorded them
-- (hark.tenant_connections), but for instance p_except_instance's.
create function hark_api.connections_of(p_tenant_id uuid, p_except_instance uuid)
returns bigint
language plpgsql
stable
as $$
begin
    return (select coalesce(sum(connections), 0)::bigint from hark.tenant_connections
        where tenant_id = p_tenant_id and seen_until > now() and instance_id is distinct from p_except_instance);
end
$$;

-- Admits one more WebSocket or event stream of the tenant at instance p_instance_id,
-- where the tenant holds p_here now: refused with 429 quota_exceeded past its
-- connections quota, counting the other instances as they last recorded themselves
-- (so connections opened at once on several instances may pass the quota by what
-- they opened since their last sync).
create function hark_api.connection_admit(p_tenant_id uuid, p_instance_id uuid, p_here integer)
returns void
language plpgsql
as $$
declare
    v_quota bigint;
begin
    perform hark_api.enter(p_tenant_id, null);
    v_quota := hark_api.quota_of(p_tenant_id, 'connections');
    if v_quota is not null and hark_api.connections_of(p_tenant_id, p_instance_id) + p_here + 1 > v_quota then
        perform hark_api.fail(429, 'quota_exceeded',
            format('The tenant''s quota of %s connections at once is reached', v_quota), 'connections');
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
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_tenant_id uuid := v_current_tenant;
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
language plpgsql
stable
as $$
begin
    return (select jsonb_build_object(
            'messages_today', coalesce((
                select messages from hark.tenant_usage_daily
                where tenant_id = p_tenant_id and day = (now() at time zone 'utc')::date), 0),
            'monthly_active_users', (
                select count(distinct user_id) from hark.tenant_active_users
                where tenant_id = p_tenant_id and day > (now() at time zone 'utc')::date - 30)));
end
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
    v_now timestamptz := now();
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
    set quotas = jsonb_strip_nulls(quotas || p_quotas), updated_at = v_now
    where id = p_tenant_id
    returning * into v_tenant;
    return hark_api.operator_tenant_json(v_tenant);
end
$$;
