-- Errors, the per-transaction context and JSON shapes shared by every API function.
--
-- Everything in schema hark_api is re-created from sql/functions/ whenever the text of
-- those files changes (see src/db/migrate.rs), so these are plain `create function`
-- statements. Functions are SECURITY INVOKER: they run as hark_app, under row-level
-- security, after hark_api.enter has switched to it.
--
-- The same functions run on a Citus coordinator (sql/citus/distribute.sql), where the
-- tables are spread over workers by tenant_id. They are written so that Citus can
-- plan every statement, which costs a plain PostgreSQL nothing:
-- - every query of a tenant's rows names the tenant (tenant_id = p_tenant_id, or
--   v_current_tenant, the setting read into a variable), so that it goes to the one
--   worker holding them; row-level security still applies, it only cannot route;
-- - a row is passed to a function as row(x.*)::hark.<table>, since on a worker the
--   row of a shard has the shard's type, which no function takes;
-- - functions over tables are PL/pgSQL (Citus cannot plan the parameters of SQL ones);
-- - values come first and statements after: no subquery in an INSERT's VALUES, no
--   volatile call in an UPDATE, and now() read into v_now for UPDATEs and ON CONFLICT
--   DO UPDATEs (Citus takes no non-immutable call in their CASE and COALESCE), and a
--   function that writes is called with values already read (a statement reading a
--   worker's table would run the whole call there);
-- - an INSERT … SELECT returns its rows (else Citus writes them by COPY, which
--   row-level security refuses);
-- - `exists (select 1 from …)`, never an empty select list.

create schema hark_api;
grant usage on schema hark_api to hark_app;

-- Raises an error that the server maps to an HTTP status: SQLSTATE HK<status>, the
-- stable error code as the message, followed by a space and the offending input field
-- if there is one, and the human text as the detail.
create function hark_api.fail(p_status integer, p_code text, p_message text, p_field text default null)
returns void
language plpgsql
as $$
begin
    -- The field rides in the message, after the code and a space, not in the error's
    -- column: Citus passes on an error raised on a worker with its code, message,
    -- detail and hint only.
    raise exception using
        errcode = 'HK' || p_status::text,
        message = p_code || coalesce(' ' || nullif(p_field, ''), ''),
        detail = p_message;
end
$$;

-- Sets a setting for the rest of the transaction, as SET LOCAL: the one way the API
-- functions set the context that row-level security and they themselves read. On a
-- Citus coordinator a SET LOCAL reaches the workers the transaction goes on to touch
-- (citus.propagate_set_commands = 'local'; set_config would not), so the policies on
-- the shards see the same tenant; on a plain PostgreSQL that setting is an inert
-- placeholder. A setting that already has the value is left alone: Citus replays every
-- SET LOCAL of the transaction on each connection it opens, and a batch enters the
-- same context once per item.
create function hark_api.set_local(p_name text, p_value text)
returns void
language plpgsql
as $$
begin
    if current_setting(p_name, true) is distinct from p_value then
        execute format('set local citus.propagate_set_commands = ''local''; set local %s = %L',
                       p_name, p_value);
    end if;
end
$$;

-- Switches the transaction to hark_app and sets the tenant and user that row-level
-- security and the API functions read. Everything is transaction-local, so a pooled
-- connection (or a pooler in transaction mode) never carries it into the next request.
create function hark_api.enter(p_tenant_id uuid, p_user_id uuid)
returns void
language plpgsql
as $$
declare
    v_tenant text := coalesce(p_tenant_id::text, '');
    v_user text := coalesce(p_user_id::text, '');
begin
    -- One statement (hark_api.set_local's, at once): this runs at the start of every
    -- call, and again for every item of a batch, where the context rarely changes.
    -- On Citus, statements over several shards go one shard at a time: a transaction
    -- that ran one in parallel could not write a reference table (the tenants) after.
    if current_user = 'hark_app' and current_setting('hark.tenant_id', true) = v_tenant
       and current_setting('hark.user_id', true) = v_user
       and current_setting('hark.tenant_slug', true) = '' and current_setting('hark.key_role', true) = ''
       and current_setting('hark.key_id', true) = '' then
        return;
    end if;
    -- The role by set_config, which Citus does not pass on: it connects to a worker
    -- as the current role anyway, which is the owner inside a security definer
    -- function (the search index's), where a passed-on role would be hark_app.
    perform set_config('role', 'hark_app', true);
    execute format(
        'set local citus.propagate_set_commands = ''local''; '
        'set local citus.multi_shard_modify_mode = ''sequential''; '
        'set local hark.tenant_id = %L; set local hark.user_id = %L; set local hark.tenant_slug = ''''; '
        'set local hark.key_role = ''''; set local hark.key_id = ''''',
        v_tenant, v_user);
end
$$;

create function hark_api.current_tenant_id()
returns uuid
language sql
stable
as $$ select nullif(current_setting('hark.tenant_id', true), '')::uuid $$;

create function hark_api.current_user_id()
returns uuid
language sql
stable
as $$ select nullif(current_setting('hark.user_id', true), '')::uuid $$;

-- Refuses the callers of a tenant the operator suspended, whichever way they come in
-- (a token, an API key, a login, a refresh, a registration): 403 tenant_suspended.
create function hark_api.require_not_suspended(p_tenant_id uuid)
returns void
language plpgsql
as $$
begin
    if exists (select 1 from hark.tenants where id = p_tenant_id and suspended_at is not null) then
        perform hark_api.fail(403, 'tenant_suspended', 'This tenant is suspended by the operator of this service');
    end if;
end
$$;

-- Whether the tenant is neither deleted nor suspended. Read on its own, not joined to
-- the tenant's tables: on Citus the tenants are a reference table, and a delegated
-- call's queries may each touch the tenant's shards or the reference tables, not both
-- (sql/citus/delegate.sql).
create function hark_api.tenant_open(p_tenant_id uuid)
returns boolean
language plpgsql
stable
as $$
begin
    return exists (select 1 from hark.tenants
                   where id = p_tenant_id and deleted_at is null and suspended_at is null);
end
$$;

-- Enters the context of a verified access token and checks what a signature cannot:
-- that its session is still open, its user not deleted and its tenant neither deleted
-- nor suspended (403 tenant_suspended).
-- Returns the user's role as it is now (it may have changed since the token was issued).
-- A session of kind 'acting' is an API key acting as the user (hark_api.key_acting_session):
-- the key must still be live, its creator still an owner or admin, and the user's role
-- not above the creator's, checked here so that every path through a session obeys it.
create function hark_api.enter_session(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns text
language plpgsql
as $$
declare
    v_role text;
    v_key_id uuid;
    v_key_role text;
begin
    perform hark_api.enter(p_tenant_id, p_user_id);
    select u.role, s.api_key_id into v_role, v_key_id
    from hark.sessions s
    join hark.users u on u.tenant_id = s.tenant_id and u.id = s.user_id
    where s.tenant_id = p_tenant_id
      and s.id = p_session_id
      and s.user_id = p_user_id
      and s.revoked_at is null
      and s.expires_at > now()
      and u.deleted_at is null;
    if v_role is null or not hark_api.tenant_open(p_tenant_id) then
        perform hark_api.require_not_suspended(p_tenant_id);
        perform hark_api.fail(401, 'token_revoked', 'The token has been revoked, or its user or tenant no longer exists');
    end if;
    if v_key_id is not null then
        v_key_role := hark_api.enter_key_role(p_tenant_id, v_key_id);
        if hark_api.role_rank(v_role) > hark_api.role_rank(v_key_role) then
            perform hark_api.fail(403, 'role_above_key',
                'This API key was created by an admin: it cannot act for owners');
        end if;
    end if;
    return v_role;
end
$$;

-- The role a key acts with: its creator's current one, if the key is live and its
-- creator still an active owner or admin (401 otherwise); kept transaction-locally in
-- hark.key_role for the checks that follow.
create function hark_api.enter_key_role(p_tenant_id uuid, p_key_id uuid)
returns text
language plpgsql
as $$
declare
    v_role text;
begin
    select c.role into v_role
    from hark.api_keys k
    join hark.users c on c.tenant_id = k.tenant_id and c.id = k.created_by
    where k.tenant_id = p_tenant_id and k.id = p_key_id and k.revoked_at is null
      and c.deleted_at is null and c.deactivated_at is null and c.role in ('owner', 'admin');
    if v_role is null then
        perform hark_api.fail(401, 'invalid_api_key',
            'The API key is unknown or revoked, or its creator is no longer an active owner or admin');
    end if;
    perform hark_api.set_local('hark.key_role', v_role), hark_api.set_local('hark.key_id', p_key_id::text);
    return v_role;
end
$$;

-- Enters the context of a tenant's API key, identified by the SHA-256 digest of the
-- whole key. No user is set: the key acts for the tenant's own backend.
-- A key acts with its creator's current role at most (an admin's key cannot open an
-- owner's session), and stops working when its creator is no longer an owner or an
-- admin of the tenant. The role is kept transaction-locally in hark.key_role.
create function hark_api.enter_api_key(p_tenant_id uuid, p_secret_hash bytea)
returns uuid
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_key_id uuid;
begin
    perform hark_api.enter(p_tenant_id, null);
    select k.id into v_key_id
    from hark.api_keys k
    where k.tenant_id = p_tenant_id and k.secret_hash = p_secret_hash;
    if v_key_id is null or not hark_api.tenant_open(p_tenant_id) then
        perform hark_api.require_not_suspended(p_tenant_id);
        v_key_id := null;
    end if;
    perform hark_api.enter_key_role(p_tenant_id, v_key_id);
    -- Recording every use would turn each read into a write; a minute's precision is enough.
    update hark.api_keys
    set last_used_at = v_now
    where tenant_id = p_tenant_id and id = v_key_id and (last_used_at is null or last_used_at < v_now - interval '1 minute');
    return v_key_id;
end
$$;

-- Enters the context of a user's session or of an API key (p_key_hash set) and
-- answers the role it acts with in the tenant (a key's: its creator's).
create function hark_api.enter_principal(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea)
returns text
language plpgsql
as $$
begin
    if p_key_hash is not null then
        perform hark_api.enter_api_key(p_tenant_id, p_key_hash);
        return current_setting('hark.key_role', true);
    end if;
    return hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
end
$$;

-- Enters the context of a tenant's administrator: a user's session whose current role
-- is owner or admin, or an API key (p_key_hash set), which acts as its creator's role.
create function hark_api.enter_admin(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea)
returns void
language plpgsql
as $$
begin
    perform hark_api.require_admin(hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash));
end
$$;

-- Finds a live tenant by slug, enters it and returns its id; fails with 404 otherwise.
create function hark_api.enter_tenant_by_slug(p_slug text)
returns uuid
language plpgsql
as $$
declare
    v_tenant_id uuid;
begin
    perform hark_api.enter(null, null);
    perform hark_api.set_local('hark.tenant_slug', coalesce(lower(p_slug), ''));
    select id into v_tenant_id from hark.tenants where slug = lower(p_slug) and deleted_at is null;
    perform hark_api.set_local('hark.tenant_slug', '');
    perform hark_api.set_local('hark.key_role', '');
    if v_tenant_id is null then
        perform hark_api.fail(404, 'tenant_not_found', 'No tenant has this slug', 'tenant');
    end if;
    perform hark_api.set_local('hark.tenant_id', v_tenant_id::text);
    perform hark_api.require_not_suspended(v_tenant_id);
    return v_tenant_id;
end
$$;

-- The role of the current user, or a 401 when the user no longer exists.
create function hark_api.caller_role()
returns text
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_role text;
begin
    select role into v_role from hark.users where tenant_id = v_current_tenant and id = hark_api.current_user_id() and deleted_at is null;
    if v_role is null then
        perform hark_api.fail(401, 'token_revoked', 'The user of this token no longer exists');
    end if;
    return v_role;
end
$$;

-- Tells every instance that a session (p_session_id), every session of a user
-- (p_user_id alone) or a whole tenant (both null) is revoked: each closes the matching
-- WebSockets and event streams at once (4001) when the transaction commits. The
-- payload is three ids, far under NOTIFY's limit.
create function hark_api.announce_revocation(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns void
language sql
as $$
    select pg_notify('hark_revocations', jsonb_build_object(
        'tenant_id', p_tenant_id, 'user_id', p_user_id, 'session_id', p_session_id)::text)
$$;

-- A page size must be between 1 and p_max (422 invalid_limit otherwise).
create function hark_api.check_limit(p_limit integer, p_max integer)
returns void
language plpgsql
as $$
begin
    if p_limit is null or p_limit < 1 or p_limit > p_max then
        perform hark_api.fail(422, 'invalid_limit', format('The limit must be between 1 and %s', p_max), 'limit');
    end if;
end
$$;

-- Roles in order: a caller never gives or acts with a role ranked above its own.
create function hark_api.role_rank(p_role text)
returns integer
language sql
immutable
as $$
    select case p_role when 'owner' then 4 when 'admin' then 3 when 'moderator' then 2 when 'member' then 1 else 0 end
$$;

create function hark_api.require_admin(p_role text)
returns void
language plpgsql
as $$
begin
    if p_role not in ('owner', 'admin') then
        perform hark_api.fail(403, 'forbidden', 'Only an owner or admin of the tenant may do this');
    end if;
end
$$;

-- The public shape of a user. Email is private: only the user and the tenant's
-- admins see it.
-- p_show_private: the caller is the user, an owner or admin of the tenant, or the
-- tenant's backend (an API key). Only they see the email, the external id and the
-- metadata, which other members have no business reading.
create function hark_api.user_json(p_user hark.users, p_show_private boolean)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p_user.id,
        'username', p_user.username,
        'display_name', p_user.display_name,
        'email', case when p_show_private then p_user.email end,
        'avatar_url', p_user.avatar_url,
        'bio', p_user.bio,
        'role', p_user.role,
        'external_id', case when p_show_private then p_user.external_id end,
        'metadata', case when p_show_private then p_user.metadata end,
        'deactivated_at', p_user.deactivated_at,
        'banned_at', p_user.banned_at,
        'ban_expires_at', p_user.ban_expires_at,
        'ban_reason', case when p_show_private then p_user.ban_reason end,
        'last_seen_at', p_user.last_seen_at,
        'created_at', p_user.created_at,
        'updated_at', p_user.updated_at)
$$;

-- A deactivated user, or one banned from the tenant (until the ban ends), cannot log
-- in, be minted a session or be acted for (403).
create function hark_api.require_active(p_user hark.users)
returns void
language plpgsql
as $$
begin
    if p_user.deactivated_at is not null then
        perform hark_api.fail(403, 'user_deactivated', 'This user is deactivated');
    end if;
    if p_user.banned_at is not null and (p_user.ban_expires_at is null or p_user.ban_expires_at > now()) then
        perform hark_api.fail(403, 'user_banned', 'This user is banned from this chat');
    end if;
end
$$;

create function hark_api.tenant_json(p_tenant hark.tenants)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p_tenant.id,
        'slug', p_tenant.slug,
        'name', p_tenant.name,
        'registration_open', p_tenant.registration_open,
        'erasure_mode', p_tenant.erasure_mode,
        'retention_days', p_tenant.retention_days,
        'created_at', p_tenant.created_at,
        'updated_at', p_tenant.updated_at)
$$;

-- The opaque cursor of a list ordered by a time and an id, newest first.
create function hark_api.time_cursor(p_at timestamptz, p_id uuid)
returns text
language sql
immutable
as $$
    select (extract(epoch from p_at) * 1000000)::bigint || '_' || p_id
$$;

-- A time cursor read back: null for none, 422 invalid_cursor for one this server did
-- not make.
create function hark_api.parse_time_cursor(p_cursor text)
returns record
language plpgsql
immutable
as $$
declare
    v_at timestamptz;
    v_id uuid;
begin
    if p_cursor is null then
        select null::timestamptz, null::uuid into v_at, v_id;
    elsif p_cursor !~ '^[0-9]{1,18}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
        perform hark_api.fail(422, 'invalid_cursor', 'The cursor is not one this API gave out', 'cursor');
    else
        -- Whole microseconds, exactly (to_timestamp's double precision would round).
        v_at := timestamptz 'epoch' + split_part(p_cursor, '_', 1)::bigint * interval '1 microsecond';
        v_id := split_part(p_cursor, '_', 2)::uuid;
    end if;
    return (v_at, v_id);
end
$$;

-- Refuses a retention that is not a whole number of days from 0 (keep everything) to
-- 36500: 422 invalid_retention_days. One rule for tenants and rooms.
create function hark_api.validate_retention_days(p_days jsonb)
returns void
language plpgsql
as $$
begin
    if jsonb_typeof(p_days) <> 'number' or (p_days #>> '{}')::numeric not between 0 and 36500
       or (p_days #>> '{}')::numeric <> trunc((p_days #>> '{}')::numeric) then
        perform hark_api.fail(422, 'invalid_retention_days',
            'retention_days must be a whole number of days from 1 to 36500, or 0 to keep everything', 'retention_days');
    end if;
end
$$;
