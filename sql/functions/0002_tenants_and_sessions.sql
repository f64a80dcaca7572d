-- Tenants, sessions and API keys: creating a tenant with its owner, registration,
-- login, refresh and logout, and the keys with which a tenant's backend acts.

-- Opens a session for a user of the current tenant and returns the user.
create function hark_api.session_open(
    p_user_id uuid, p_session_id uuid, p_kind text, p_refresh_hash bytea, p_expires_at timestamptz)
returns jsonb
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_user hark.users;
begin
    select * into v_user from hark.users where tenant_id = v_current_tenant and id = p_user_id and deleted_at is null;
    if v_user.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    perform hark_api.require_active(v_user);
    insert into hark.sessions (tenant_id, id, user_id, kind, refresh_hash, expires_at)
    values (v_current_tenant, p_session_id, p_user_id, p_kind, p_refresh_hash, p_expires_at);
    return hark_api.user_json(v_user, true);
end
$$;

create function hark_api.tenant_create(
    p_tenant_id uuid, p_slug text, p_name text,
    p_user_id uuid, p_username text, p_email text, p_display_name text, p_password_hash text,
    p_session_id uuid, p_refresh_hash bytea, p_session_expires_at timestamptz,
    p_registration_open boolean)
returns jsonb
language plpgsql
as $$
declare
    v_tenant hark.tenants;
    v_user jsonb;
begin
    perform hark_api.enter(p_tenant_id, p_user_id);
    insert into hark.tenants (id, slug, name, registration_open)
    values (p_tenant_id, lower(p_slug), p_name, p_registration_open)
    returning * into v_tenant;
    insert into hark.users (tenant_id, id, username, email, display_name, role, password_hash)
    values (p_tenant_id, p_user_id, p_username, p_email, p_display_name, 'owner', p_password_hash);
    v_user := hark_api.session_open(p_user_id, p_session_id, 'password', p_refresh_hash, p_session_expires_at);
    return jsonb_build_object('tenant', hark_api.tenant_json(v_tenant), 'user', v_user);
end
$$;

create function hark_api.tenant_get(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    return (select hark_api.tenant_json(row(t.*)::hark.tenants) from hark.tenants t where t.id = p_tenant_id);
end
$$;

-- Applies the keys present in p_patch (name, registration_open, erasure_mode,
-- retention_days). Owners and admins only.
create function hark_api.tenant_update(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_patch jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_tenant hark.tenants;
begin
    perform hark_api.require_admin(hark_api.enter_session(p_tenant_id, p_user_id, p_session_id));
    if p_patch ? 'name' and jsonb_typeof(p_patch -> 'name') <> 'string' then
        perform hark_api.fail(422, 'invalid_name', 'The name must be a string of 1 to 100 characters', 'name');
    end if;
    if p_patch ? 'registration_open' and jsonb_typeof(p_patch -> 'registration_open') <> 'boolean' then
        perform hark_api.fail(422, 'invalid_registration_open', 'registration_open must be true or false', 'registration_open');
    end if;
    if p_patch ? 'erasure_mode' and coalesce(p_patch ->> 'erasure_mode', '') not in ('anonymise', 'delete') then
        perform hark_api.fail(422, 'invalid_erasure_mode', 'erasure_mode must be anonymise or delete', 'erasure_mode');
    end if;
    if p_patch ? 'retention_days' then
        perform hark_api.validate_retention_days(p_patch -> 'retention_days');
    end if;
    update hark.tenants t
    set name = case when p_patch ? 'name' then p_patch ->> 'name' else t.name end,
        registration_open = case when p_patch ? 'registration_open'
                                 then (p_patch ->> 'registration_open')::boolean
                                 else t.registration_open end,
        erasure_mode = coalesce(p_patch ->> 'erasure_mode', t.erasure_mode),
        retention_days = case when p_patch ? 'retention_days'
                              then nullif((p_patch ->> 'retention_days')::integer, 0)
                              else t.retention_days end,
        updated_at = v_now
    where t.id = p_tenant_id
    returning * into v_tenant;
    perform hark_api.webhook_event(p_tenant_id, p_tenant_id, 'tenant.updated',
        jsonb_build_object('tenant', hark_api.tenant_json(v_tenant), 'actor_id', p_user_id));
    perform hark_api.audit('tenant.update', 'tenant', p_tenant_id, null, null, jsonb_build_object('patch', p_patch));
    return hark_api.tenant_json(v_tenant);
end
$$;

-- Deletes the tenant (owners only): it disappears at once for everybody, every token
-- of it is refused, and its slug stays taken so that nobody can impersonate it.
create function hark_api.tenant_delete(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns void
language plpgsql
as $$
begin
    if hark_api.enter_session(p_tenant_id, p_user_id, p_session_id) <> 'owner' then
        perform hark_api.fail(403, 'forbidden', 'Only an owner may delete the tenant');
    end if;
    perform hark_api.tenant_mark_deleted(p_tenant_id);
end
$$;

-- Marks a tenant deleted, whoever deletes it (an owner, the operator): its sessions
-- and keys are revoked and its streams end on every instance at once; its rows go in
-- the background (hark_api.purge_tenants).
create function hark_api.tenant_mark_deleted(p_tenant_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
begin
    perform hark_api.enter(p_tenant_id, hark_api.current_user_id());
    update hark.tenants set deleted_at = v_now, updated_at = v_now where id = p_tenant_id;
    update hark.sessions set revoked_at = v_now where tenant_id = p_tenant_id and revoked_at is null;
    update hark.api_keys set revoked_at = v_now where tenant_id = p_tenant_id and revoked_at is null;
    perform hark_api.announce_revocation(p_tenant_id, null, null);
end
$$;

-- Self-registration as a member of the tenant with this slug, unless the tenant has
-- closed it. Returns the tenant id and the new user.
-- Enters the live tenant with this slug if it accepts registrations (404 or 403
-- otherwise); returns its id.
create function hark_api.enter_open_tenant(p_tenant_slug text)
returns uuid
language plpgsql
as $$
declare
    v_tenant_id uuid;
begin
    v_tenant_id := hark_api.enter_tenant_by_slug(p_tenant_slug);
    if not (select registration_open from hark.tenants where id = v_tenant_id) then
        perform hark_api.fail(403, 'registration_closed', 'This tenant does not accept registrations');
    end if;
    return v_tenant_id;
end
$$;

-- The cheap checks of a registration, made before its password is hashed (which is
-- slow and takes memory on purpose): the tenant exists and is open, the username is
-- free. hark_api.register checks them again.
create function hark_api.registration_check(p_tenant_slug text, p_username text)
returns void
language plpgsql
as $$
declare
    v_tenant_id uuid;
begin
    v_tenant_id := hark_api.enter_open_tenant(p_tenant_slug);
    if exists (select 1 from hark.users
               where tenant_id = v_tenant_id and lower(username) = lower(p_username) and deleted_at is null) then
        perform hark_api.fail(409, 'username_taken', 'This username is taken', 'username');
    end if;
end
$$;

-- The cheap check of a tenant creation, made before the owner's password is hashed:
-- the slug is free (a deleted tenant keeps its slug). hark_api.tenant_create's
-- unique constraint decides races.
create function hark_api.tenant_slug_check(p_slug text)
returns void
language plpgsql
as $$
begin
    perform hark_api.enter(null, null);
    perform hark_api.set_local('hark.tenant_slug', coalesce(lower(p_slug), ''));
    if exists (select 1 from hark.tenants where slug = lower(p_slug)) then
        perform hark_api.fail(409, 'slug_taken', 'This tenant slug is taken', 'slug');
    end if;
end
$$;

create function hark_api.register(
    p_tenant_slug text, p_user_id uuid, p_username text, p_email text, p_display_name text,
    p_password_hash text, p_session_id uuid, p_refresh_hash bytea, p_session_expires_at timestamptz)
returns jsonb
language plpgsql
as $$
declare
    v_tenant_id uuid;
    v_user jsonb;
begin
    v_tenant_id := hark_api.enter_open_tenant(p_tenant_slug);
    perform hark_api.require_quota(v_tenant_id, 'users', 1);
    perform hark_api.set_local('hark.user_id', p_user_id::text);
    insert into hark.users (tenant_id, id, username, email, display_name, role, password_hash)
    values (v_tenant_id, p_user_id, p_username, p_email, p_display_name, 'member', p_password_hash);
    v_user := (select hark_api.user_json(row(u.*)::hark.users, true) from hark.users u
               where u.tenant_id = v_tenant_id and u.id = p_user_id);
    perform hark_api.webhook_event(v_tenant_id, v_tenant_id, 'user.created', jsonb_build_object('user', v_user));
    return jsonb_build_object(
        'tenant_id', v_tenant_id,
        'user', hark_api.session_open(p_user_id, p_session_id, 'password', p_refresh_hash, p_session_expires_at));
end
$$;

-- The stored password hash of the live user whose username or email is p_login in the
-- tenant with this slug, for the server to verify; null when there is none, so that a
-- caller cannot tell an unknown tenant from an unknown user from a wrong password.
create function hark_api.login_lookup(p_tenant_slug text, p_login text)
returns jsonb
language plpgsql
as $$
declare
    v_tenant_id uuid;
    v_user hark.users;
begin
    perform hark_api.enter(null, null);
    perform hark_api.set_local('hark.tenant_slug', coalesce(lower(p_tenant_slug), ''));
    select id into v_tenant_id from hark.tenants where slug = lower(p_tenant_slug) and deleted_at is null;
    if v_tenant_id is null then
        return null;
    end if;
    perform hark_api.set_local('hark.tenant_id', v_tenant_id::text);
    perform hark_api.require_not_suspended(v_tenant_id);
    select * into v_user
    from hark.users u
    where u.tenant_id = v_tenant_id
      and u.deleted_at is null
      and u.password_hash is not null
      and (lower(u.username) = lower(p_login) or lower(u.email) = lower(p_login))
    order by lower(u.username) = lower(p_login) desc
    limit 1;
    if v_user.id is null then
        return null;
    end if;
    return jsonb_build_object('tenant_id', v_tenant_id, 'user_id', v_user.id, 'password_hash', v_user.password_hash);
end
$$;

-- Opens a session after the server has verified the password.
create function hark_api.login_complete(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_refresh_hash bytea, p_session_expires_at timestamptz)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter(p_tenant_id, p_user_id);
    if exists (select 1 from hark.tenants where id = p_tenant_id and deleted_at is not null) then
        perform hark_api.fail(401, 'invalid_credentials', 'The tenant, login or password is wrong');
    end if;
    perform hark_api.require_not_suspended(p_tenant_id);
    return hark_api.session_open(p_user_id, p_session_id, 'password', p_refresh_hash, p_session_expires_at);
end
$$;

-- Exchanges a session's refresh secret for a new one (the old one stops working) and
-- returns the user, whose current role goes into the new access token.
create function hark_api.session_refresh(
    p_tenant_id uuid, p_session_id uuid, p_refresh_hash bytea, p_new_refresh_hash bytea, p_expires_at timestamptz)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_session hark.sessions;
    v_user hark.users;
    v_open boolean;
begin
    perform hark_api.enter(p_tenant_id, null);
    perform hark_api.require_not_suspended(p_tenant_id);
    v_open := hark_api.tenant_open(p_tenant_id);
    select s.* into v_session
    from hark.sessions s
    where s.tenant_id = p_tenant_id
      and s.id = p_session_id
      and s.refresh_hash = p_refresh_hash
      and s.revoked_at is null
      and s.expires_at > now()
      and v_open
    for update of s;
    if v_session.id is null then
        -- A spent token presented again: someone holds a copy. The session ends (and
        -- its streams with it); the caller learns it from the answer, not an error,
        -- since an error would roll the revocation back.
        update hark.sessions s
        set revoked_at = v_now
        from hark.spent_refresh_tokens spent
        where spent.tenant_id = p_tenant_id and spent.refresh_hash = p_refresh_hash
          and s.tenant_id = p_tenant_id and s.id = spent.session_id and s.id = p_session_id
          and s.revoked_at is null
        returning s.* into v_session;
        if v_session.id is not null then
            perform hark_api.announce_revocation(p_tenant_id, v_session.user_id, v_session.id);
            return jsonb_build_object('outcome', 'reused');
        end if;
        perform hark_api.fail(401, 'invalid_refresh_token', 'The refresh token is unknown, used, expired or revoked');
    end if;
    select * into v_user from hark.users where tenant_id = p_tenant_id and id = v_session.user_id and deleted_at is null;
    if v_user.id is null then
        perform hark_api.fail(401, 'invalid_refresh_token', 'The user of this refresh token no longer exists');
    end if;
    perform hark_api.set_local('hark.user_id', v_user.id::text);
    insert into hark.spent_refresh_tokens (tenant_id, refresh_hash, session_id)
    values (p_tenant_id, p_refresh_hash, p_session_id);
    update hark.sessions
    set refresh_hash = p_new_refresh_hash, refreshed_at = v_now, expires_at = p_expires_at
    where tenant_id = p_tenant_id and id = p_session_id;
    return jsonb_build_object('outcome', 'rotated', 'user', hark_api.user_json(v_user, true));
end
$$;

create function hark_api.logout(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    update hark.sessions set revoked_at = v_now where tenant_id = p_tenant_id and id = p_session_id;
    perform hark_api.announce_revocation(p_tenant_id, p_user_id, p_session_id);
end
$$;

create function hark_api.api_key_json(p_key hark.api_keys)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p_key.id,
        'name', p_key.name,
        'prefix', p_key.prefix,
        'created_by', p_key.created_by,
        'created_at', p_key.created_at,
        'last_used_at', p_key.last_used_at,
        'revoked_at', p_key.revoked_at)
$$;

create function hark_api.api_key_create(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid,
    p_key_id uuid, p_name text, p_prefix text, p_secret_hash bytea)
returns jsonb
language plpgsql
as $$
declare
    v_key hark.api_keys;
begin
    perform hark_api.require_admin(hark_api.enter_session(p_tenant_id, p_user_id, p_session_id));
    insert into hark.api_keys (tenant_id, id, name, prefix, secret_hash, created_by)
    values (p_tenant_id, p_key_id, p_name, p_prefix, p_secret_hash, p_user_id)
    returning * into v_key;
    perform hark_api.audit('api_key.create', 'api_key', p_key_id, null, null,
        jsonb_build_object('name', p_name, 'prefix', p_prefix));
    return hark_api.api_key_json(v_key);
end
$$;

-- Every key of the tenant, newest first, revoked ones included so that the audit
-- trail stays visible.
create function hark_api.api_key_list(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.require_admin(hark_api.enter_session(p_tenant_id, p_user_id, p_session_id));
    return coalesce(
        (select jsonb_agg(hark_api.api_key_json(row(k.*)::hark.api_keys) order by k.created_at desc, k.id desc)
         from hark.api_keys k where k.tenant_id = p_tenant_id),
        '[]'::jsonb);
end
$$;

create function hark_api.api_key_revoke(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
begin
    perform hark_api.require_admin(hark_api.enter_session(p_tenant_id, p_user_id, p_session_id));
    update hark.api_keys set revoked_at = coalesce(revoked_at, v_now) where tenant_id = p_tenant_id and id = p_key_id;
    if not found then
        perform hark_api.fail(404, 'api_key_not_found', 'No such API key');
    end if;
    perform hark_api.audit('api_key.revoke', 'api_key', p_key_id, null, null, '{}');
end
$$;

-- With an API key: create a user of the tenant (no password; the backend mints its
-- tokens). The role may be member, moderator or admin, never owner.
create function hark_api.backend_user_create(
    p_tenant_id uuid, p_secret_hash bytea,
    p_user_id uuid, p_username text, p_email text, p_display_name text, p_external_id text, p_role text)
returns jsonb
language plpgsql
as $$
declare
    v_user hark.users;
begin
    perform hark_api.enter_api_key(p_tenant_id, p_secret_hash);
    if p_role not in ('member', 'moderator', 'admin') then
        perform hark_api.fail(422, 'invalid_role', 'An API key may create members, moderators and admins only', 'role');
    end if;
    perform hark_api.require_quota(p_tenant_id, 'users', 1);
    insert into hark.users (tenant_id, id, username, email, display_name, external_id, role)
    values (p_tenant_id, p_user_id, p_username, p_email, p_display_name, p_external_id, p_role)
    returning * into v_user;
    perform hark_api.webhook_event(p_tenant_id, p_tenant_id, 'user.created',
        jsonb_build_object('user', hark_api.user_json(v_user, true)));
    return hark_api.user_json(v_user, true);
end
$$;

-- After hark_api.enter_api_key: the key may act for the user only if the user's role
-- is not above the key's (an admin's key cannot touch an owner's sessions).
create function hark_api.require_key_may_act_for(p_tenant_id uuid, p_user_id uuid)
returns void
language plpgsql
as $$
begin
    if hark_api.role_rank((select role from hark.users where tenant_id = p_tenant_id and id = p_user_id))
       > hark_api.role_rank(current_setting('hark.key_role')) then
        perform hark_api.fail(403, 'role_above_key',
            'This API key was created by an admin: it cannot act for owners');
    end if;
end
$$;

-- With an API key: open a session for one of the tenant's users.
create function hark_api.backend_session_open(
    p_tenant_id uuid, p_secret_hash bytea,
    p_user_id uuid, p_session_id uuid, p_refresh_hash bytea, p_session_expires_at timestamptz)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_api_key(p_tenant_id, p_secret_hash);
    perform hark_api.require_key_may_act_for(p_tenant_id, p_user_id);
    perform hark_api.set_local('hark.user_id', p_user_id::text);
    return hark_api.session_open(p_user_id, p_session_id, 'api_key', p_refresh_hash, p_session_expires_at);
end
$$;

-- With an API key: ends every session of one of the tenant's users (a customer's
-- backend logging a user out everywhere). Their tokens are refused from then on and
-- their streams end on every instance.
create function hark_api.backend_sessions_revoke(p_tenant_id uuid, p_secret_hash bytea, p_user_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
begin
    perform hark_api.enter_api_key(p_tenant_id, p_secret_hash);
    if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_user_id and deleted_at is null) then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    perform hark_api.require_key_may_act_for(p_tenant_id, p_user_id);
    update hark.sessions set revoked_at = v_now
    where tenant_id = p_tenant_id and user_id = p_user_id and revoked_at is null;
    perform hark_api.announce_revocation(p_tenant_id, p_user_id, null);
end
$$;
