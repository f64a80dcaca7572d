-- Erasure: a user's personal data removed from every table, on their own request or
-- an administrator's (the right to erasure). Their messages are anonymised or
-- deleted as the tenant chose (tenants.erasure_mode).

-- The document with every string value equal to one of p_values replaced by
-- "[erased]", at any depth; keys and other values stay.
create function hark_api.jsonb_erase(p_doc jsonb, p_values text[])
returns jsonb
language plpgsql
immutable
as $$
begin
    return case jsonb_typeof(p_doc)
        when 'string' then
            case when (p_doc #>> '{}') = any(p_values) then to_jsonb('[erased]'::text) else p_doc end
        when 'array' then (
            select coalesce(jsonb_agg(hark_api.jsonb_erase(element, p_values) order by position), '[]'::jsonb)
            from jsonb_array_elements(p_doc) with ordinality as elements (element, position))
        when 'object' then (
            select coalesce(jsonb_object_agg(key, hark_api.jsonb_erase(value, p_values)), '{}'::jsonb)
            from jsonb_each(p_doc))
        else p_doc
    end;
end
$$;

-- Replaces every JSON string equal to one of p_values, in every jsonb column of every
-- table holding tenants' rows (the event log, feeds, webhook payloads, the audit log,
-- report snapshots, metadata), with "[erased]": one pass over each column's rows of
-- the tenant, rewriting only the documents that hold one of them. Whole values only:
-- another member's text that merely contains a short name is theirs and stays. Runs
-- as the tables' owner (SECURITY DEFINER), since the audit log is append-only for the
-- serving role and erasure must reach it; it touches the given tenant's rows only.
create function hark_api.erase_values(p_tenant_id uuid, p_values text[])
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_column record;
    v_values text[] := array(select distinct v from unnest(p_values) v where v <> '');
    v_quoted text[];
begin
    -- Each value as it reads inside a document's text, to find the documents at all.
    v_quoted := array(select to_json(v)::text from unnest(v_values) v);
    for v_column in
        select c.relname as table_name, a.attname as column_name
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = 'hark' and c.relkind in ('r', 'p') and a.atttypid = 'jsonb'::regtype
          and exists (select from pg_attribute t
                      where t.attrelid = c.oid and t.attname = 'tenant_id' and not t.attisdropped)
        order by 1, 2
    loop
        execute format(
            'update hark.%1$I set %2$I = hark_api.jsonb_erase(%2$I, $2) '
            'where tenant_id = $1 and exists (select from unnest($3) q where strpos(%2$I::text, q) > 0)',
            v_column.table_name, v_column.column_name)
        using p_tenant_id, v_values, v_quoted;
    end loop;
end
$$;

-- The writes of an erasure (hark_api.user_erase, which checked who may), as the
-- tables' owner: the user's rows, and their values everywhere (hark_api.erase_values).
create function hark_api.erase_user_rows(p_tenant_id uuid, p_target_id uuid, p_mode text, p_values text[])
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_now timestamptz := now();
    v_mode text := p_mode;
    v_values text[] := p_values;
    v_message_ids uuid[] := '{}';
    v_target hark.users;
begin
    -- Only inside the context hark_api.user_erase entered.
    if p_tenant_id is distinct from hark_api.current_tenant_id() then
        raise exception 'erase_user_rows outside its tenant''s context';
    end if;
    -- The user's row and the owners' are locked here, as the role that writes them.
    select * into v_target from hark.users where tenant_id = p_tenant_id and id = p_target_id for update;
    perform hark_api.require_not_last_owner(v_target);
    if v_mode = 'delete' then
        select coalesce(array_agg(id), '{}'),
               v_values || coalesce(array_agg(body) filter (where body <> ''), '{}')
        into v_message_ids, v_values
        from hark.messages where tenant_id = p_tenant_id and sender_id = p_target_id;
        v_values := v_values || coalesce((
            select array_agg(body) from hark.message_edits
            where tenant_id = p_tenant_id and message_id = any(v_message_ids) and body <> ''), '{}');
        update hark.messages
        set body = '', attachment = null, mentions = '{}', pinned_at = null, pinned_by = null,
            deleted_at = coalesce(deleted_at, v_now)
        where tenant_id = p_tenant_id and id = any(v_message_ids);
        delete from hark.message_edits where tenant_id = p_tenant_id and message_id = any(v_message_ids);
        delete from hark.mentions where tenant_id = p_tenant_id and message_id = any(v_message_ids);
        -- The log keeps each event and its seq; the message in it becomes the tombstone.
        update hark.room_events
        set data = data || jsonb_build_object('body', '', 'attachment', null, 'deleted', true)
        where tenant_id = p_tenant_id and type in ('message.created', 'message.edited')
          and (data ->> 'id')::uuid = any(v_message_ids);
    end if;

    update hark.users
    set username = 'erased-' || left(replace(id::text, '-', ''), 24),
        email = null, display_name = null, avatar_url = null, bio = null, external_id = null,
        metadata = '{}', password_hash = null, ban_reason = null,
        deleted_at = coalesce(deleted_at, v_now), erased_at = v_now, updated_at = v_now
    where tenant_id = p_tenant_id and id = p_target_id;
    delete from hark.sessions where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.room_members where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.reactions where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.mentions where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.thread_reads where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.user_events where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.user_feeds where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.blocks where tenant_id = p_tenant_id and p_target_id in (blocker_id, blocked_id);
    delete from hark.room_restrictions where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.reports where tenant_id = p_tenant_id and reporter_id = p_target_id;
    delete from hark.user_connections where tenant_id = p_tenant_id and user_id = p_target_id;
    delete from hark.user_exports where tenant_id = p_tenant_id and user_id = p_target_id;
    perform hark_api.erase_values(p_tenant_id, v_values);
    perform hark_api.announce_revocation(p_tenant_id, p_target_id, null);
    perform hark_api.audit('user.erase', 'user', p_target_id, null, null, jsonb_build_object('mode', v_mode));
    return jsonb_build_object(
        'user_id', p_target_id, 'mode', v_mode, 'messages', cardinality(v_message_ids));
end
$$;

-- Erases a user: the user themselves, or an owner or admin (an owner only by an
-- owner; API keys as their creator's role). Their profile keeps only its id; their
-- sessions, memberships, reactions, mentions, read markers, feed, blocks (either
-- way), restrictions, reports they filed, connections and exports go; every copy of their
-- name, email and ids outside is replaced (hark_api.erase_values); their messages are
-- anonymised, or with erasure_mode 'delete' become tombstones with their earlier
-- versions and every copy of their text gone (the search index drops tombstones by
-- its trigger). Their streams end on
-- every instance; the audit log records the erasure (without the name). Answers what
-- was done.
create function hark_api.user_erase(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_target_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_role text;
    v_target hark.users;
    v_mode text;
    v_values text[];
begin
    v_role := hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    v_target := hark_api.managed_user(v_role, p_user_id, p_target_id, 'erase', true, false);
    select erasure_mode into v_mode from hark.tenants where id = p_tenant_id;
    v_values := array_remove(array[v_target.username, v_target.email, v_target.display_name,
                                   v_target.external_id, v_target.bio, v_target.avatar_url], null);

    -- The writes run as the tables' owner, all of them: erasure reaches the audit log,
    -- which is append-only for hark_app, and on Citus a transaction cannot write a
    -- worker's shard as one role after another role wrote it.
    return hark_api.erase_user_rows(p_tenant_id, p_target_id, v_mode, v_values);
end
$$;
