-- The server-side API: what a tenant's backend does with an API key beyond minting
-- sessions. It acts as any of its users through the client's own functions (an
-- 'acting' session, checked by hark_api.enter_session), sends system messages with no
-- sender, lists every room of the tenant, and deactivates and reactivates users.

-- With an API key: the live session through which the key acts as p_user_id, opened
-- on first use. Answers {session_id, role}. The key's rules are those of minting a
-- session: the user must exist and be active, and not rank above the key's creator.
create function hark_api.key_acting_session(p_tenant_id uuid, p_secret_hash bytea, p_user_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_key_id uuid;
    v_user hark.users;
    v_session_id uuid;
begin
    v_key_id := hark_api.enter_api_key(p_tenant_id, p_secret_hash);
    select * into v_user from hark.users where tenant_id = p_tenant_id and id = p_user_id and deleted_at is null;
    if v_user.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No user has the id given in X-Hark-User', 'X-Hark-User');
    end if;
    perform hark_api.require_active(v_user);
    perform hark_api.require_key_may_act_for(p_tenant_id, p_user_id);
    select id into v_session_id from hark.sessions
    where tenant_id = p_tenant_id and api_key_id = v_key_id and user_id = p_user_id
      and kind = 'acting' and revoked_at is null;
    if v_session_id is null then
        -- No refresh token exists for an acting session: the stored digest is of a
        -- random value nobody holds. Instances racing here meet on the unique index.
        insert into hark.sessions (tenant_id, id, user_id, kind, refresh_hash, expires_at, api_key_id)
        values (p_tenant_id, gen_random_uuid(), p_user_id, 'acting',
                sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'infinity', v_key_id)
        on conflict (tenant_id, api_key_id, user_id) where kind = 'acting' and revoked_at is null do nothing;
        select id into v_session_id from hark.sessions
        where tenant_id = p_tenant_id and api_key_id = v_key_id and user_id = p_user_id
          and kind = 'acting' and revoked_at is null;
    end if;
    return jsonb_build_object('session_id', v_session_id, 'role', v_user.role);
end
$$;

-- Deactivates (p_active false) or reactivates a user: owners and admins, or an API
-- key; only an owner (or an owner's key) touches an owner, nobody deactivates
-- themselves, and the tenant keeps an active owner. Deactivating revokes every session
-- of the user, which ends their streams on every instance.
create function hark_api.user_set_active(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_target_id uuid, p_active boolean)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_actor_role text;
    v_target hark.users;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    v_actor_role := coalesce(nullif(current_setting('hark.key_role', true), ''), hark_api.caller_role());
    select * into v_target from hark.users where tenant_id = p_tenant_id and id = p_target_id and deleted_at is null for update;
    if v_target.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    if v_target.role = 'owner' and v_actor_role <> 'owner' then
        perform hark_api.fail(403, 'forbidden', 'Only an owner may deactivate or reactivate an owner');
    end if;
    if (v_target.deactivated_at is null) = p_active then
        return hark_api.user_json(v_target, true);
    end if;
    if not p_active then
        if p_target_id = p_user_id then
            perform hark_api.fail(409, 'cannot_deactivate_self', 'Nobody deactivates themselves; ask another admin');
        end if;
        if v_target.role = 'owner' then
            perform 1 from hark.users where tenant_id = p_tenant_id and role = 'owner' and deleted_at is null for update;
            if not exists (select 1 from hark.users where tenant_id = p_tenant_id and role = 'owner' and deleted_at is null
                             and deactivated_at is null and id <> p_target_id) then
                perform hark_api.fail(409, 'last_owner', 'The tenant must keep at least one active owner');
            end if;
        end if;
    end if;
    update hark.users
    set deactivated_at = case when p_active then null else v_now end, updated_at = v_now
    where tenant_id = p_tenant_id and id = p_target_id
    returning * into v_target;
    if not p_active then
        update hark.sessions set revoked_at = v_now
        where tenant_id = p_tenant_id and user_id = p_target_id and revoked_at is null;
        perform hark_api.announce_revocation(p_tenant_id, p_target_id, null);
    end if;
    perform hark_api.webhook_event(p_tenant_id, p_tenant_id, 'user.updated',
        jsonb_build_object('user', hark_api.user_json(v_target, true), 'actor_id', p_user_id));
    perform hark_api.audit(case when p_active then 'user.reactivate' else 'user.deactivate' end,
        'user', p_target_id, null, null, '{}');
    return hark_api.user_json(v_target, true);
end
$$;

-- With an API key: a system message with no sender, by the rules of every send
-- (hark_api.message_check, as a room owner would send it) and through the same writer
-- and JSON builder. Waits for the room's lock: a backend's send is not batched.
create function hark_api.system_message_send(
    p_tenant_id uuid, p_secret_hash bytea, p_room_id uuid, p_message_id uuid, p_body text,
    p_max_body_bytes integer, p_traceparent text)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_plain hark_api.thread_and_mentions := row(null, null, '{}', false)::hark_api.thread_and_mentions;
    v_pending jsonb;
begin
    perform hark_api.enter_api_key(p_tenant_id, p_secret_hash);
    v_room := hark_api.lock_room(p_room_id, true);
    v_pending := hark_api.lone_send_pending(p_tenant_id);
    perform hark_api.message_check(
        '{"role": "owner"}', hark_api.send_context(v_room, hark_api.filter_patterns()), null, p_message_id,
        'system', p_body, null, null, null, p_max_body_bytes, v_pending, v_plain);
    return hark_api.message_write(v_room, p_message_id, null, 'system', p_body, null, null, null, p_traceparent,
                                  v_plain, v_pending);
end
$$;

-- Every room of the tenant (owners and admins, or an API key), in order of creation
-- (ids are UUIDv7), optionally of one kind, archived or not, with a member, or whose
-- name contains p_query (case-insensitive); paged by the last id.
create function hark_api.room_list_all(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_kind text, p_archived boolean, p_member_id uuid, p_query text, p_after uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_page hark.rooms[] := '{}';
    v_items jsonb;
    v_count integer;
    v_last uuid;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    if p_kind is not null and p_kind not in ('group', 'direct') then
        perform hark_api.fail(422, 'invalid_kind', 'The kind must be group or direct', 'kind');
    end if;
    perform hark_api.check_limit(p_limit, 200);
    if p_query is not null and char_length(p_query) > 100 then
        perform hark_api.fail(422, 'invalid_query', 'The query must be at most 100 characters', 'q');
    end if;
    -- The page is read first and rendered after: room_json reads other tables, which
    -- on Citus a query over a page's subquery would reach from the worker's shard.
    for v_room in
        select r.* from hark.rooms r
        where r.tenant_id = p_tenant_id and (p_after is null or r.id > p_after)
          and (p_kind is null or r.kind = p_kind)
          and (p_archived is null or (r.archived_at is not null) = p_archived)
          and (p_member_id is null or exists (
                  select 1 from hark.room_members m
                  where m.tenant_id = p_tenant_id and m.room_id = r.id and m.user_id = p_member_id))
          and (p_query is null or strpos(lower(coalesce(r.name, '')), lower(p_query)) > 0)
        order by r.id
        limit p_limit
    loop
        v_page := v_page || v_room;
    end loop;
    select coalesce(jsonb_agg(hark_api.room_json(page) order by page.id), '[]'::jsonb),
           count(*),
           max(page.id::text)::uuid
    into v_items, v_count, v_last
    from unnest(v_page) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;
