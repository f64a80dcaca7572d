-- Batched message writes (invariant 7). A notifying transaction cannot group-commit,
-- so an instance sends the messages waiting at the same moment as one batch: one
-- transaction, one notification per room. Each item runs in its own subtransaction,
-- so a bad item fails alone with its own error while the others commit.

-- Sends a batch of messages. p_items is an array of objects with the arguments of
-- hark_api.message_send (tenant_id, user_id, session_id, room_id, message_id, kind,
-- body, attachment, reply_to_id, client_id). Answers an array of the same length:
-- {"ok": <the answer of message_send>} or {"error": {sqlstate, message, detail,
-- column, constraint}} per item.
create function hark_api.message_send_batch(p_items jsonb, p_max_body_bytes integer)
returns jsonb
language plpgsql
as $$
declare
    v_item jsonb;
    v_room record;
    v_locked jsonb := '[]'::jsonb;
    v_results jsonb[] := '{}';
    v_result jsonb;
    v_state text;
    v_message text;
    v_detail text;
    v_column text;
    v_constraint text;
    v_first_seq bigint;
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
        select last_seq into v_first_seq from hark.rooms where id = v_room.room_id for update;
        if v_first_seq is not null then
            v_locked := v_locked || jsonb_build_array(jsonb_build_object(
                'tenant_id', v_room.tenant_id, 'room_id', v_room.room_id, 'first_seq', v_first_seq));
        end if;
    end loop;
    -- The row trigger stays quiet during the batch; one notification per room follows.
    perform set_config('hark.batch_notify', 'deferred', true);

    for v_item in select value from jsonb_array_elements(p_items) loop
        begin
            v_result := jsonb_build_object('ok', hark_api.message_send(
                (v_item ->> 'tenant_id')::uuid,
                (v_item ->> 'user_id')::uuid,
                (v_item ->> 'session_id')::uuid,
                (v_item ->> 'room_id')::uuid,
                (v_item ->> 'message_id')::uuid,
                v_item ->> 'kind',
                v_item ->> 'body',
                case when jsonb_typeof(v_item -> 'attachment') = 'object' then v_item -> 'attachment' end,
                (v_item ->> 'reply_to_id')::uuid,
                v_item ->> 'client_id',
                p_max_body_bytes));
        exception when others then
            get stacked diagnostics
                v_state = returned_sqlstate,
                v_message = message_text,
                v_detail = pg_exception_detail,
                v_column = column_name,
                v_constraint = constraint_name;
            v_result := jsonb_build_object('error', jsonb_build_object(
                'sqlstate', v_state, 'message', v_message, 'detail', v_detail,
                'column', v_column, 'constraint', v_constraint));
        end;
        v_results := array_append(v_results, v_result);
    end loop;

    perform set_config('hark.batch_notify', '', true);
    for v_room in
        select (locked ->> 'tenant_id')::uuid as tenant_id, (locked ->> 'room_id')::uuid as room_id,
               (locked ->> 'first_seq')::bigint as first_seq
        from jsonb_array_elements(v_locked) locked
    loop
        perform hark_api.enter(v_room.tenant_id, null);
        select coalesce(jsonb_agg(hark_api.event_json(e) order by e.seq), '[]'::jsonb) into v_events
        from hark.room_events e
        where e.room_id = v_room.room_id and e.seq > v_room.first_seq;
        if jsonb_array_length(v_events) = 0 then
            continue;
        end if;
        v_payload := jsonb_build_object('tenant_id', v_room.tenant_id, 'events', v_events)::text;
        if octet_length(v_payload) > 7000 then
            v_payload := jsonb_build_object(
                'tenant_id', v_room.tenant_id, 'room_id', v_room.room_id,
                'seq', (v_events -> -1 ->> 'seq')::bigint)::text;
        end if;
        perform pg_notify(hark_api.room_channel(v_room.room_id), v_payload);
    end loop;
    return to_jsonb(v_results);
end
$$;
