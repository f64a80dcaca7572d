-- Users of a tenant: read, list, update and delete.

create function hark_api.user_me(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    return (select hark_api.user_json(row(u.*)::hark.users, true) from hark.users u where u.tenant_id = p_tenant_id and u.id = p_user_id);
end
$$;

create function hark_api.user_get(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_target_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_role text;
    v_result jsonb;
begin
    v_role := hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    select hark_api.user_json(row(u.*)::hark.users, u.id = p_user_id or v_role in ('owner', 'admin')) into v_result
    from hark.users u
    where u.tenant_id = p_tenant_id and u.id = p_target_id and u.deleted_at is null;
    if v_result is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    return v_result;
end
$$;

create function hark_api.user_get_by_username(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_username text)
returns jsonb
language plpgsql
as $$
declare
    v_role text;
    v_result jsonb;
begin
    v_role := hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    select hark_api.user_json(row(u.*)::hark.users, u.id = p_user_id or v_role in ('owner', 'admin')) into v_result
    from hark.users u
    where u.tenant_id = p_tenant_id and lower(u.username) = lower(p_username) and u.deleted_at is null;
    if v_result is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    return v_result;
end
$$;

-- One page of the tenant's live users in id order (ids are time-ordered UUIDv7, so
-- this is the order of creation), optionally of one role, after the cursor p_after.
-- With p_online, only users who are (true) or are not (false) among p_online_ids, the
-- users connected now as the instance's presence knows them.
create function hark_api.user_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_role text, p_after uuid, p_limit integer,
    p_online boolean, p_online_ids uuid[], p_metadata jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_role text;
    v_items jsonb;
    v_last uuid;
    v_count integer;
begin
    v_role := hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if p_role is not null and p_role not in ('owner', 'admin', 'moderator', 'member') then
        perform hark_api.fail(422, 'invalid_role', 'The role must be owner, admin, moderator or member', 'role');
    end if;
    perform hark_api.check_limit(p_limit, 200);
    -- Metadata is shown to owners and admins only, so only they may filter by it: a
    -- filter would tell anyone else what it holds.
    if p_metadata is not null and v_role not in ('owner', 'admin') then
        perform hark_api.fail(403, 'forbidden', 'Only owners and admins filter users by metadata');
    end if;
    select coalesce(jsonb_agg(hark_api.user_json(row(page.*)::hark.users, page.id = p_user_id or v_role in ('owner', 'admin')) order by page.id), '[]'::jsonb),
           max(page.id::text)::uuid,
           count(*)
    into v_items, v_last, v_count
    from (
        select u.* from hark.users u
        where u.tenant_id = p_tenant_id and u.deleted_at is null
          and (p_role is null or u.role = p_role)
          and (p_online is null or (u.id = any(p_online_ids)) = p_online)
          and (p_metadata is null or u.metadata @> p_metadata)
          and (p_after is null or u.id > p_after)
        order by u.id
        limit p_limit
    ) page;
    return jsonb_build_object(
        'items', v_items,
        'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

-- Applies the keys present in p_patch. A user may change their own profile; owners
-- and admins may change anyone's, and anyone's role, except that only an owner may
-- touch an owner or make one, and the tenant always keeps at least one owner.
create function hark_api.user_update(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_target_id uuid, p_patch jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_caller_role text;
    v_target hark.users;
    v_new_role text;
    v_old_role text;
    v_field text;
begin
    v_caller_role := hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    select * into v_target from hark.users where tenant_id = p_tenant_id and id = p_target_id and deleted_at is null for update;
    if v_target.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    v_old_role := v_target.role;
    if p_target_id <> p_user_id and v_caller_role not in ('owner', 'admin') then
        perform hark_api.fail(403, 'forbidden', 'Only owners and admins may change other users');
    end if;
    if p_target_id <> p_user_id and v_target.role = 'owner' and v_caller_role <> 'owner' then
        perform hark_api.fail(403, 'forbidden', 'Only an owner may change an owner');
    end if;
    foreach v_field in array array['display_name', 'email', 'avatar_url', 'bio'] loop
        if p_patch ? v_field and jsonb_typeof(p_patch -> v_field) not in ('string', 'null') then
            perform hark_api.fail(422, 'invalid_' || v_field, v_field || ' must be a string or null', v_field);
        end if;
    end loop;
    if p_patch ? 'metadata' and jsonb_typeof(p_patch -> 'metadata') <> 'object' then
        perform hark_api.fail(422, 'invalid_metadata', 'metadata must be a JSON object', 'metadata');
    end if;
    if p_patch ? 'role' then
        v_new_role := p_patch ->> 'role';
        if v_new_role is null or v_new_role not in ('owner', 'admin', 'moderator', 'member') then
            perform hark_api.fail(422, 'invalid_role', 'The role must be owner, admin, moderator or member', 'role');
        end if;
        if v_caller_role not in ('owner', 'admin') then
            perform hark_api.fail(403, 'forbidden', 'Only owners and admins may change roles');
        end if;
        if v_new_role = 'owner' and v_caller_role <> 'owner' then
            perform hark_api.fail(403, 'forbidden', 'Only an owner may make an owner');
        end if;
        if v_target.role = 'owner' and v_new_role <> 'owner' then
            -- Lock every owner row so that two concurrent demotions cannot both see
            -- the other owner and leave the tenant with none.
            perform 1 from hark.users where tenant_id = p_tenant_id and role = 'owner' and deleted_at is null for update;
            if not exists (select 1 from hark.users where tenant_id = p_tenant_id and role = 'owner' and deleted_at is null and id <> p_target_id) then
                perform hark_api.fail(409, 'last_owner', 'The tenant must keep at least one owner', 'role');
            end if;
        end if;
    end if;
    update hark.users u
    set display_name = case when p_patch ? 'display_name' then p_patch ->> 'display_name' else u.display_name end,
        email = case when p_patch ? 'email' then p_patch ->> 'email' else u.email end,
        avatar_url = case when p_patch ? 'avatar_url' then p_patch ->> 'avatar_url' else u.avatar_url end,
        bio = case when p_patch ? 'bio' then p_patch ->> 'bio' else u.bio end,
        metadata = case when p_patch ? 'metadata' then p_patch -> 'metadata' else u.metadata end,
        role = coalesce(v_new_role, u.role),
        updated_at = v_now
    where u.tenant_id = p_tenant_id and u.id = p_target_id
    returning * into v_target;
    if v_new_role is not null and v_new_role <> v_old_role then
        perform hark_api.audit('user.role_change', 'user', p_target_id, null, null,
            jsonb_build_object('role', v_new_role, 'previous_role', v_old_role));
    end if;
    perform hark_api.webhook_event(p_tenant_id, p_tenant_id, 'user.updated',
        jsonb_build_object('user', hark_api.user_json(v_target, true), 'actor_id', p_user_id));
    return hark_api.user_json(v_target, true);
end
$$;

-- Deletes a user (themselves, or anyone by an owner or admin; owners only by owners).
-- The row stays as a tombstone so that their messages keep an author; the username
-- and email are freed and every session is revoked.
-- The user an account operation (deletion, erasure, export) is about, locked unless
-- p_lock is false (erasure locks it as the tables' owner, hark_api.erase_user_rows):
-- the caller themselves, or, for owners and admins (API keys as their creator's role),
-- anyone, owners only by owners. 404 user_not_found for a user that is not there
-- (deleted ones too unless p_deleted_too), 403 forbidden for anyone else.
create function hark_api.managed_user(
    p_role text, p_caller_id uuid, p_target_id uuid, p_action text, p_deleted_too boolean,
    p_lock boolean default true)
returns hark.users
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_target hark.users;
begin
    if p_lock then
        select * into v_target from hark.users
        where tenant_id = v_current_tenant and id = p_target_id and erased_at is null
          and (p_deleted_too or deleted_at is null)
        for update;
    else
        select * into v_target from hark.users
        where tenant_id = v_current_tenant and id = p_target_id and erased_at is null
          and (p_deleted_too or deleted_at is null);
    end if;
    if v_target.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    if p_target_id is distinct from p_caller_id then
        if p_role not in ('owner', 'admin') then
            perform hark_api.fail(403, 'forbidden', format('Only owners and admins may %s other users', p_action));
        end if;
        if v_target.role = 'owner' and p_role <> 'owner' then
            perform hark_api.fail(403, 'forbidden', format('Only an owner may %s an owner', p_action));
        end if;
    end if;
    return v_target;
end
$$;

-- Refuses to take away the tenant's last live owner (409 last_owner); the owners'
-- rows are locked, so that two owners leaving at once cannot both go.
create function hark_api.require_not_last_owner(p_target hark.users)
returns void
language plpgsql
as $$
begin
    if p_target.role <> 'owner' or p_target.deleted_at is not null then
        return;
    end if;
    perform 1 from hark.users
    where tenant_id = p_target.tenant_id and role = 'owner' and deleted_at is null for update;
    if not exists (select 1 from hark.users where tenant_id = p_target.tenant_id and role = 'owner'
                   and deleted_at is null and id <> p_target.id) then
        perform hark_api.fail(409, 'last_owner', 'The tenant must keep at least one owner; hand ownership over first');
    end if;
end
$$;

create function hark_api.user_delete(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_target_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_caller_role text;
    v_target hark.users;
begin
    v_caller_role := hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_target := hark_api.managed_user(v_caller_role, p_user_id, p_target_id, 'delete', false);
    perform hark_api.require_not_last_owner(v_target);
    update hark.users
    set deleted_at = v_now, updated_at = v_now, password_hash = null, email = null, external_id = null
    where tenant_id = p_tenant_id and id = p_target_id;
    if p_target_id <> p_user_id then
        perform hark_api.audit('user.delete', 'user', p_target_id, null, null,
            jsonb_build_object('username', v_target.username));
    end if;
    update hark.sessions set revoked_at = v_now where tenant_id = p_tenant_id and user_id = p_target_id and revoked_at is null;
    perform hark_api.announce_revocation(p_tenant_id, p_target_id, null);
    perform hark_api.webhook_event(p_tenant_id, p_tenant_id, 'user.deleted',
        jsonb_build_object('user_id', p_target_id, 'actor_id', p_user_id));
end
$$;
