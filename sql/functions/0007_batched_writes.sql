-- Batched message writes (invariant 7). A notifying transaction cannot group-commit,
-- so an instance sends the messages waiting at the same moment as one batch: one
-- transaction, one notification per room. The rules are the same as in
-- hark_api.message_send, checked item by item (a bad item fails alone with its own
-- error), but the writes are set-based: one INSERT of messages and one of events per
-- tenant, one UPDATE per room.

-- Sends a batch of messages. p_items is an array of objects with the arguments of
-- hark_api.message_send (tenant_id, user_id, session_id, room_id, message_id, kind,
-- body, attachment, reply_to_id, client_id). Answers an array of the same length:
-- {"ok": <the answer of message_send>} or {"error": {sqlstate, message, detail,
-- column, constraint}} per item. p_traceparent, when the batch is traced, rides in
-- its notifications.
create function hark_api.message_send_batch(p_items jsonb, p_max_body_bytes integer, p_traceparent text)
returns jsonb
language plpgsql
as $$
declare
    v_item record;
    v_room record;
    v_tenant uuid;
    v_rooms jsonb := '{}';
    v_checked_sessions jsonb := '{}';
    v_roles jsonb := '{}';
    v_senders jsonb := '{}';
    v_in_batch jsonb := '{}';
    v_new jsonb[] := '{}';
    v_results jsonb[] := '{}';
    v_state text;
    v_message text;
    v_detail text;
    v_column text;
    v_constraint text;
    v_key text;
    v_role text;
    v_room_state jsonb;
    v_seq bigint;
    v_existing hark.messages;
    v_json jsonb;
    v_attachment jsonb;
    v_new_rows jsonb;
    v_events jsonb;
    v_payload text;
begin
    -- Rooms are locked in id order, whatever the order of the items, so that batches
    -- of several instances touching the same rooms cannot deadlock. Each room is
    -- locked under its own tenant (row-level security).
    for v_room in
        select distinct (item ->> 'tenant_id')::uuid as tenant_id, (item ->> 'room_id')::uuid as room_id
        from jsonb_array_elements(p_items) item
        order by room_id
    loop
        perform hark_api.enter(v_room.tenant_id, null);
        select jsonb_build_object(
                   'tenant_id', r.tenant_id, 'first_seq', r.last_seq, 'next_seq', r.last_seq,
                   'archived', r.archived_at is not null)
        into v_room_state
        from hark.rooms r where r.id = v_room.room_id
        for update;
        if v_room_state is not null then
            v_rooms := jsonb_set(v_rooms, array[v_room.room_id::text], v_room_state);
        end if;
    end loop;

    for v_item in
        select (item ->> 'tenant_id')::uuid as tenant_id, (item ->> 'user_id')::uuid as user_id,
               (item ->> 'session_id')::uuid as session_id, (item ->> 'room_id')::uuid as room_id,
               (item ->> 'message_id')::uuid as message_id, item ->> 'kind' as kind,
               coalesce(item ->> 'body', '') as body,
               case when jsonb_typeof(item -> 'attachment') = 'object' then item -> 'attachment' end as attachment,
               (item ->> 'reply_to_id')::uuid as reply_to_id, item ->> 'client_id' as client_id
        from jsonb_array_elements(p_items) with ordinality as items(item, position)
        order by position
    loop
        begin
            -- The session, once per batch; the context, for every item.
            v_key := v_item.tenant_id || '/' || v_item.user_id || '/' || v_item.session_id;
            if v_checked_sessions ? v_key then
                perform hark_api.enter(v_item.tenant_id, v_item.user_id);
            else
                perform hark_api.enter_session(v_item.tenant_id, v_item.user_id, v_item.session_id);
                v_checked_sessions := v_checked_sessions || jsonb_build_object(v_key, true);
            end if;
            v_room_state := v_rooms -> v_item.room_id::text;
            if v_room_state is null or (v_room_state ->> 'tenant_id')::uuid <> v_item.tenant_id then
                perform hark_api.fail(404, 'room_not_found', 'No such room');
            end if;
            v_key := v_item.room_id || '/' || v_item.user_id;
            if v_roles ? v_key then
                v_role := v_roles ->> v_key;
            else
                v_role := hark_api.member_role(v_item.room_id);
                v_roles := v_roles || jsonb_build_object(v_key, v_role);
            end if;
            if v_role is null then
                perform hark_api.fail(403, 'not_a_member', 'Only members of the room may do this');
            end if;
            if (v_room_state ->> 'archived')::boolean then
                perform hark_api.fail(409, 'room_archived', 'The room is archived: its history stays readable, nothing new is accepted');
            end if;
            if v_item.client_id is not null then
                if char_length(v_item.client_id) not between 1 and 100 then
                    perform hark_api.fail(422, 'invalid_client_id', 'The client id must be 1 to 100 characters', 'client_id');
                end if;
                v_key := v_item.room_id || '/' || v_item.user_id || '/' || v_item.client_id;
                if v_in_batch ? v_key then
                    v_results := array_append(v_results, jsonb_build_object('ok', jsonb_build_object(
                        'created', false, 'message', v_in_batch -> v_key)));
                    continue;
                end if;
                select * into v_existing from hark.messages
                where room_id = v_item.room_id and sender_id = v_item.user_id and client_id = v_item.client_id;
                if v_existing.id is not null then
                    v_results := array_append(v_results, jsonb_build_object('ok', jsonb_build_object(
                        'created', false, 'message', hark_api.message_json(v_existing, v_item.user_id))));
                    continue;
                end if;
            end if;
            perform hark_api.validate_message(v_item.kind, v_item.body, v_item.attachment, p_max_body_bytes);
            if v_item.kind = 'system' and v_role not in ('owner', 'admin') then
                perform hark_api.fail(403, 'forbidden', 'Only owners and admins of the room send system messages');
            end if;
            if v_item.reply_to_id is not null
               and not exists (select from hark.messages where id = v_item.reply_to_id and room_id = v_item.room_id)
               and not exists (select from unnest(v_new) row
                               where row ->> 'id' = v_item.reply_to_id::text and row ->> 'room_id' = v_item.room_id::text) then
                perform hark_api.fail(422, 'invalid_reply_to', 'The message replied to is not in this room', 'reply_to_id');
            end if;
            if not v_senders ? v_item.user_id::text then
                v_senders := v_senders || jsonb_build_object(v_item.user_id::text, hark_api.user_ref(v_item.user_id));
            end if;
            v_seq := (v_room_state ->> 'next_seq')::bigint + 1;
            v_rooms := jsonb_set(v_rooms, array[v_item.room_id::text, 'next_seq'], to_jsonb(v_seq));
            -- The same shape as hark_api.message_json_with of the row written below.
            v_json := jsonb_build_object(
                'id', v_item.message_id,
                'room_id', v_item.room_id,
                'seq', v_seq,
                'sender', v_senders -> v_item.user_id::text,
                'kind', v_item.kind,
                'body', v_item.body,
                'attachment', v_item.attachment,
                'reply_to_id', v_item.reply_to_id,
                'client_id', v_item.client_id,
                'created_at', now(),
                'edited_at', null,
                'deleted', false,
                'deleted_at', null,
                'reactions', '[]'::jsonb);
            v_new := array_append(v_new, jsonb_build_object(
                'tenant_id', v_item.tenant_id, 'id', v_item.message_id, 'room_id', v_item.room_id,
                'seq', v_seq, 'sender_id', v_item.user_id, 'kind', v_item.kind, 'body', v_item.body,
                'attachment', v_item.attachment, 'reply_to_id', v_item.reply_to_id,
                'client_id', v_item.client_id, 'json', v_json));
            if v_item.client_id is not null then
                v_in_batch := v_in_batch || jsonb_build_object(
                    v_item.room_id || '/' || v_item.user_id || '/' || v_item.client_id, v_json);
            end if;
            v_results := array_append(v_results, jsonb_build_object('ok', jsonb_build_object(
                'created', true, 'message', v_json)));
        exception when others then
            get stacked diagnostics
                v_state = returned_sqlstate,
                v_message = message_text,
                v_detail = pg_exception_detail,
                v_column = column_name,
                v_constraint = constraint_name;
            v_results := array_append(v_results, jsonb_build_object('error', jsonb_build_object(
                'sqlstate', v_state, 'message', v_message, 'detail', v_detail,
                'column', v_column, 'constraint', v_constraint)));
        end;
    end loop;

    -- The writes, per tenant (row-level security), with the row trigger quiet: one
    -- notification per room follows.
    perform set_config('hark.batch_notify', 'deferred', true);
    v_new_rows := to_jsonb(v_new);
    for v_tenant in select distinct (row ->> 'tenant_id')::uuid from jsonb_array_elements(v_new_rows) row loop
        perform hark_api.enter(v_tenant, null);
        insert into hark.messages (tenant_id, id, room_id, seq, sender_id, kind, body, attachment, reply_to_id, client_id)
        select v_tenant, (row ->> 'id')::uuid, (row ->> 'room_id')::uuid, (row ->> 'seq')::bigint,
               (row ->> 'sender_id')::uuid, row ->> 'kind', row ->> 'body',
               case when jsonb_typeof(row -> 'attachment') = 'object' then row -> 'attachment' end,
               (row ->> 'reply_to_id')::uuid, row ->> 'client_id'
        from jsonb_array_elements(v_new_rows) row
        where (row ->> 'tenant_id')::uuid = v_tenant
        order by (row ->> 'seq')::bigint;
        insert into hark.room_events (tenant_id, room_id, seq, type, actor_id, data)
        select v_tenant, (row ->> 'room_id')::uuid, (row ->> 'seq')::bigint, 'message.created',
               (row ->> 'sender_id')::uuid, row -> 'json'
        from jsonb_array_elements(v_new_rows) row
        where (row ->> 'tenant_id')::uuid = v_tenant;
    end loop;
    perform set_config('hark.batch_notify', '', true);

    for v_room in
        select key::uuid as room_id, (value ->> 'tenant_id')::uuid as tenant_id,
               (value ->> 'first_seq')::bigint as first_seq, (value ->> 'next_seq')::bigint as next_seq
        from jsonb_each(v_rooms)
        where (value ->> 'next_seq')::bigint > (value ->> 'first_seq')::bigint
        order by key
    loop
        perform hark_api.enter(v_room.tenant_id, null);
        update hark.rooms set last_seq = v_room.next_seq, last_event_at = now() where id = v_room.room_id;
        select jsonb_agg(jsonb_build_object(
                   'room_id', v_room.room_id, 'seq', (row ->> 'seq')::bigint, 'type', 'message.created',
                   'actor_id', row ->> 'sender_id', 'at', now(), 'data', row -> 'json')
               order by (row ->> 'seq')::bigint)
        into v_events
        from jsonb_array_elements(v_new_rows) row
        where (row ->> 'room_id')::uuid = v_room.room_id;
        v_payload := jsonb_build_object('tenant_id', v_room.tenant_id, 'events', v_events)::text;
        if octet_length(v_payload) > 7000 then
            v_payload := jsonb_build_object(
                'tenant_id', v_room.tenant_id, 'room_id', v_room.room_id, 'seq', v_room.next_seq)::text;
        end if;
        -- The batch's trace context, when it is traced (see notify_room_event).
        if p_traceparent is not null then
            v_payload := (v_payload::jsonb || jsonb_build_object('traceparent', p_traceparent))::text;
        end if;
        perform pg_notify(hark_api.room_channel(v_room.room_id), v_payload);
    end loop;
    return to_jsonb(v_results);
end
$$;
