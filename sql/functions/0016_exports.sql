-- Exports of a user's data (the right of access): asked for over the API, built in
-- the background as one JSON document, fetched once ready.

create function hark_api.user_export_json(p_export hark.user_exports)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'user_id', p_export.user_id,
        'state', p_export.state,
        'requested_at', p_export.requested_at,
        'ready_at', p_export.ready_at,
        'document', p_export.document)
$$;

-- Asks for an export of a user's data. Asking while one is being built answers that
-- one; asking once it is ready starts a new one.
create function hark_api.user_export_request(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_target_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_export hark.user_exports;
begin
    perform hark_api.managed_user(
        hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash),
        p_user_id, p_target_id, 'export', false);
    insert into hark.user_exports (tenant_id, user_id, requested_by)
    values (p_tenant_id, p_target_id, p_user_id)
    on conflict (tenant_id, user_id) do update
    set state = 'pending', document = null, ready_at = null, requested_at = v_now,
        requested_by = excluded.requested_by
    where hark.user_exports.state = 'ready';
    select * into v_export from hark.user_exports where tenant_id = p_tenant_id and user_id = p_target_id;
    return hark_api.user_export_json(v_export);
end
$$;

-- The latest export of a user's data (404 export_not_found when none was asked for).
create function hark_api.user_export_get(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_target_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_export hark.user_exports;
begin
    perform hark_api.managed_user(
        hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash),
        p_user_id, p_target_id, 'export', false);
    select * into v_export from hark.user_exports where tenant_id = p_tenant_id and user_id = p_target_id;
    if v_export.user_id is null then
        perform hark_api.fail(404, 'export_not_found', 'No export of this user''s data was asked for');
    end if;
    return hark_api.user_export_json(v_export);
end
$$;

-- Everything a user wrote or keeps, as one document: the profile, memberships with
-- read markers, every message (with its current text) and reaction, thread read
-- markers, and the reports they filed.
create function hark_api.export_document(p_tenant_id uuid, p_user_id uuid)
returns jsonb
language plpgsql
stable
as $$
begin
    return (select jsonb_build_object(
            'exported_at', now(),
            'profile', (select hark_api.user_json(row(u.*)::hark.users, true) from hark.users u
                        where u.tenant_id = p_tenant_id and u.id = p_user_id),
            'memberships', coalesce((
                select jsonb_agg(jsonb_build_object(
                    'room_id', m.room_id, 'room_name', r.name, 'kind', r.kind, 'role', m.role,
                    'joined_at', m.joined_at, 'last_read_seq', m.last_read_seq) order by m.joined_at, m.room_id)
                from hark.room_members m
                join hark.rooms r on r.tenant_id = m.tenant_id and r.id = m.room_id
                where m.tenant_id = p_tenant_id and m.user_id = p_user_id), '[]'::jsonb),
            'messages', coalesce((
                select jsonb_agg(jsonb_build_object(
                    'id', m.id, 'room_id', m.room_id, 'seq', m.seq, 'kind', m.kind, 'body', m.body,
                    'attachment', m.attachment, 'parent_id', m.parent_id, 'reply_to_id', m.reply_to_id,
                    'created_at', m.created_at, 'edited_at', m.edited_at, 'deleted', m.deleted_at is not null)
                    order by m.created_at, m.id)
                from hark.messages m
                where m.tenant_id = p_tenant_id and m.sender_id = p_user_id), '[]'::jsonb),
            'reactions', coalesce((
                select jsonb_agg(jsonb_build_object(
                    'message_id', x.message_id, 'emoji', x.emoji, 'created_at', x.created_at)
                    order by x.created_at, x.message_id)
                from hark.reactions x
                where x.tenant_id = p_tenant_id and x.user_id = p_user_id), '[]'::jsonb),
            'thread_read_markers', coalesce((
                select jsonb_agg(jsonb_build_object(
                    'room_id', t.room_id, 'parent_id', t.parent_id, 'last_read_seq', t.last_read_seq)
                    order by t.room_id, t.parent_id)
                from hark.thread_reads t
                where t.tenant_id = p_tenant_id and t.user_id = p_user_id), '[]'::jsonb),
            'reports', coalesce((
                select jsonb_agg(jsonb_build_object(
                    'id', p.id, 'room_id', p.room_id, 'message_id', p.message_id,
                    'target_user_id', p.target_user_id, 'reason', p.reason, 'details', p.details,
                    'state', p.state, 'created_at', p.created_at) order by p.created_at, p.id)
                from hark.reports p
                where p.tenant_id = p_tenant_id and p.reporter_id = p_user_id), '[]'::jsonb)));
end
$$;

-- Builds the pending export asked for first (one another instance is building is
-- skipped); answers whether there was one (a JSON boolean).
create function hark_api.export_build()
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_export hark.user_exports;
    v_candidate record;
    v_document jsonb;
begin
    perform hark_api.enter(null, null), hark_api.set_local('hark.exporting', 'on');
    -- The oldest few requests, then locked one by one by their tenant's key (the only
    -- way Citus locks a row); one another instance holds is skipped.
    for v_candidate in
        select tenant_id, user_id from hark.user_exports
        where state = 'pending'
        order by requested_at
        limit 20
    loop
        select * into v_export from hark.user_exports
        where tenant_id = v_candidate.tenant_id and user_id = v_candidate.user_id and state = 'pending'
        for update skip locked;
        exit when v_export.user_id is not null;
    end loop;
    if v_export.user_id is null then
        return to_jsonb(false);
    end if;
    perform hark_api.enter(v_export.tenant_id, null);
    v_document := hark_api.export_document(v_export.tenant_id, v_export.user_id);
    update hark.user_exports
    set state = 'ready', ready_at = v_now, document = v_document
    where tenant_id = v_export.tenant_id and user_id = v_export.user_id;
    return to_jsonb(true);
end
$$;
