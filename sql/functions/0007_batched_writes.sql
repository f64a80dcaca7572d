-- Batched message writes (invariant 10). A notifying transaction cannot group-commit,
-- so an instance sends the messages waiting at the same moment as one batch: one
-- transaction, one notification per room. Each item is checked by the same rules as
-- hark_api.message_send (hark_api.message_check: a bad item fails alone with its own
-- error), its JSON is built by the same builder, and its event is appended by the same
-- writer; only the writes are set-based: one INSERT of messages per tenant, and one
-- hark_api.append_events per room.

-- Sends a batch of messages. p_items is an array of objects with the arguments of
-- hark_api.message_send (tenant_id, user_id, session_id, room_id, message_id, kind,
-- body, attachment, reply_to_id, client_id, parent_id, show_in_room, mentions,
-- mention_room). Answers an array of the same length:
-- {"ok": <the answer of message_send>} or {"error": {sqlstate, message, detail,
-- constraint, hint}} per item, or {"busy": true} for the items of a room another
-- transaction holds: the batch does not wait for it (see hark_api.lock_room), and the
-- writer sends those items aside. p_traceparent, when the batch is traced, rides in
-- its notifications. p_tenant_id is the tenant of every item when the writer grouped
-- them by tenant (on Citus, where the call then runs on that tenant's worker, see
-- sql/citus/delegate.sql), or null for items of any tenants.
create function hark_api.message_send_batch(
    p_tenant_id uuid, p_items jsonb, p_max_body_bytes integer, p_traceparent text)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_written bigint;
    v_item record;
    v_room record;
    v_tenant uuid;
    v_rooms jsonb := '{}';
    v_checked_sessions jsonb := '{}';
    v_senders_state jsonb := '{}';
    v_filters jsonb := '{}';
    v_slow_mode boolean := false;
    v_conversation boolean := false;
    v_senders jsonb := '{}';
    v_pending jsonb := '{}';
    v_new hark.messages[] := '{}';
    v_row hark.messages;
    v_results jsonb[] := '{}';
    v_state text;
    v_message text;
    v_detail text;
    v_constraint text;
    v_hint text;
    v_key text;
    v_sender jsonb;
    v_room_state jsonb;
    v_existing jsonb;
    v_json jsonb;
    v_events jsonb[] := '{}';
begin
    if p_tenant_id is not null and exists (
        select from jsonb_array_elements(p_items) item where (item ->> 'tenant_id')::uuid <> p_tenant_id)
    then
        raise exception 'a batch of tenant % holds items of another tenant', p_tenant_id;
    end if;
    -- Rooms are locked in id order, whatever the order of the items, so that batches
    -- of several instances touching the same rooms cannot deadlock. Each room is
    -- locked under its own tenant (row-level security). A room another transaction
    -- holds is skipped, not waited for: one busy room must not hold up the others.
    for v_room in
        select distinct (item ->> 'tenant_id')::uuid as tenant_id, (item ->> 'room_id')::uuid as room_id
        from jsonb_array_elements(p_items) item
        order by room_id
    loop
        perform hark_api.enter(v_room.tenant_id, null);
        -- A tenant's word filters, once per batch.
        if not v_filters ? v_room.tenant_id::text then
            v_filters := v_filters || jsonb_build_object(v_room.tenant_id::text, hark_api.filter_patterns());
        end if;
        select hark_api.send_context(row(r.*)::hark.rooms, v_filters -> v_room.tenant_id::text) || jsonb_build_object(
                   'tenant_id', r.tenant_id, 'first_seq', r.last_seq, 'next_seq', r.last_seq)
        into v_room_state
        from hark.rooms r where r.tenant_id = v_room.tenant_id and r.id = v_room.room_id
        for update skip locked;
        if v_room_state is null and hark_api.room_exists(v_room.tenant_id, v_room.room_id) then
            v_room_state := jsonb_build_object('tenant_id', v_room.tenant_id, 'busy', true);
        end if;
        if v_room_state is not null then
            v_rooms := jsonb_set(v_rooms, array[v_room.room_id::text], v_room_state);
        end if;
    end loop;

    -- The send allowance of each tenant with send quotas, taken after the rooms' locks
    -- (the order a lone send takes them in).
    for v_tenant in
        select distinct (value ->> 'tenant_id')::uuid from jsonb_each(v_rooms)
        where not coalesce((value ->> 'busy')::boolean, false)
    loop
        perform hark_api.enter(v_tenant, null);
        v_pending := v_pending || hark_api.lone_send_pending(v_tenant);
    end loop;

    for v_item in
        select (item ->> 'tenant_id')::uuid as tenant_id, (item ->> 'user_id')::uuid as user_id,
               (item ->> 'session_id')::uuid as session_id, (item ->> 'room_id')::uuid as room_id,
               (item ->> 'message_id')::uuid as message_id, item ->> 'kind' as kind,
               coalesce(item ->> 'body', '') as body,
               case when jsonb_typeof(item -> 'attachment') = 'object' then item -> 'attachment' end as attachment,
               (item ->> 'reply_to_id')::uuid as reply_to_id, item ->> 'client_id' as client_id,
               row(
                   (item ->> 'parent_id')::uuid, (item ->> 'show_in_room')::boolean,
                   array(select jsonb_array_elements_text(coalesce(item -> 'mentions', '[]')))::uuid[],
                   coalesce((item ->> 'mention_room')::boolean, false))::hark_api.thread_and_mentions as thread
        from jsonb_array_elements(p_items) with ordinality as items(item, position)
        order by position
    loop
        if (v_rooms -> v_item.room_id::text ->> 'busy')::boolean then
            v_results := array_append(v_results, '{"busy": true}'::jsonb);
            continue;
        end if;
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
            if v_senders_state ? v_key then
                v_sender := v_senders_state -> v_key;
            else
                v_sender := hark_api.sender_state(v_item.room_id);
                v_senders_state := v_senders_state || jsonb_build_object(v_key, v_sender);
            end if;
            v_existing := hark_api.message_check(
                v_sender, v_room_state, v_item.user_id, v_item.message_id,
                v_item.kind, v_item.body, v_item.attachment, v_item.reply_to_id, v_item.client_id,
                p_max_body_bytes, v_pending, v_item.thread);
            if v_existing is not null then
                v_results := array_append(v_results, jsonb_build_object('ok', jsonb_build_object(
                    'created', false, 'message', v_existing)));
                continue;
            end if;
            if not v_senders ? v_item.user_id::text then
                v_senders := v_senders || jsonb_build_object(v_item.user_id::text, hark_api.user_ref(v_item.user_id));
            end if;
            v_row := row(v_item.tenant_id, v_item.message_id, v_item.room_id,
                         (v_room_state ->> 'next_seq')::bigint + 1, v_item.user_id, v_item.kind, v_item.body,
                         v_item.attachment, v_item.reply_to_id, v_item.client_id, now(), null, null,
                         (v_item.thread).parent_id, hark_api.shown_in_room(v_item.thread), 0, null, '{}',
                         hark_api.mention_ids(v_item.thread, v_item.user_id), (v_item.thread).mention_room,
                         null, null)::hark.messages;
            if v_row.parent_id is not null or v_row.mention_room or cardinality(v_row.mentions) > 0 then
                v_conversation := true;
            end if;
            v_json := hark_api.message_json_of(v_row, v_senders -> v_item.user_id::text, '[]'::jsonb);
            v_rooms := jsonb_set(v_rooms, array[v_item.room_id::text, 'next_seq'], to_jsonb(v_row.seq));
            v_events := array_append(v_events, jsonb_build_object(
                'room_id', v_item.room_id, 'type', 'message.created', 'actor_id', v_item.user_id, 'data', v_json));
            v_new := array_append(v_new, v_row);
            v_key := hark_api.allowance_key(v_item.tenant_id);
            if v_pending ? v_key then
                v_pending := jsonb_set(v_pending, array[v_key],
                                       hark_api.send_allowance_after(v_pending -> v_key, v_item.attachment));
            end if;
            v_pending := v_pending || jsonb_build_object(
                case when v_row.parent_id is null then '' else 'reply/' end || v_item.message_id, v_item.room_id);
            if (v_room_state ->> 'slow_mode_seconds')::integer > 0 then
                v_pending := v_pending || jsonb_build_object('slow/' || v_item.room_id || '/' || v_item.user_id, true);
                v_slow_mode := true;
            end if;
            if v_item.client_id is not null then
                v_pending := v_pending || jsonb_build_object(
                    v_item.room_id || '/' || v_item.user_id || '/' || v_item.client_id, v_json);
            end if;
            v_results := array_append(v_results, jsonb_build_object('ok', jsonb_build_object(
                'created', true, 'message', v_json)));
        exception when others then
            get stacked diagnostics
                v_state = returned_sqlstate,
                v_message = message_text,
                v_detail = pg_exception_detail,
                v_constraint = constraint_name,
                v_hint = pg_exception_hint;
            v_results := array_append(v_results, jsonb_build_object('error', jsonb_build_object(
                'sqlstate', v_state, 'message', v_message, 'detail', v_detail,
                'constraint', v_constraint, 'hint', v_hint)));
        end;
    end loop;

    -- The writes, per tenant (row-level security): the messages, then each room's
    -- events through the one event writer, which sends the room's notification.
    for v_tenant in select distinct tenant_id from unnest(v_new) loop
        perform hark_api.enter(v_tenant, null);
        -- A statement that returns its rows: Citus writes the rows of any other
        -- INSERT … SELECT whose source is not a table of its own by COPY, which
        -- row-level security refuses.
        with written as (
            insert into hark.messages (tenant_id, id, room_id, seq, sender_id, kind, body, attachment,
                                       reply_to_id, client_id, created_at, parent_id, show_in_room, mentions,
                                       mention_room)
            select new.tenant_id, new.id, new.room_id, new.seq, new.sender_id, new.kind, new.body,
                   new.attachment, new.reply_to_id, new.client_id, new.created_at, new.parent_id,
                   new.show_in_room, new.mentions, new.mention_room
            from unnest(v_new) new where new.tenant_id = v_tenant order by new.seq
            returning 1)
        select count(*) into v_written from written;
        if v_pending ? hark_api.allowance_key(v_tenant) then
            perform hark_api.send_counted(v_pending -> hark_api.allowance_key(v_tenant), count(*),
                                          coalesce(sum(hark_api.attachment_bytes(new.attachment)), 0)::bigint)
            from unnest(v_new) new where new.tenant_id = v_tenant;
        end if;
        for v_room in
            select (event ->> 'room_id')::uuid as room_id,
                   (v_rooms -> (event ->> 'room_id') ->> 'next_seq')::bigint as next_seq,
                   jsonb_agg(event - 'room_id' order by position) as events
            from unnest(v_events) with ordinality as events(event, position)
            where (v_rooms -> (event ->> 'room_id') ->> 'tenant_id')::uuid = v_tenant
            group by event ->> 'room_id'
            order by 1
        loop
            if hark_api.append_events(v_room.room_id, v_room.events, p_traceparent) <> v_room.next_seq then
                raise exception 'seq mismatch: the batch''s messages in room % end at % but not its events',
                    v_room.room_id, v_room.next_seq;
            end if;
        end loop;
        -- Thread summaries and mentions, for the messages that have them, after their
        -- events (a mention's webhook follows its message.created).
        if v_conversation then
            perform hark_api.conversation_written(v_tenant, array(
                select new from unnest(v_new) new
                where new.tenant_id = v_tenant
                  and (new.parent_id is not null or new.mention_room or cardinality(new.mentions) > 0)
                order by new.seq));
        end if;
        -- Senders held to slow mode: what their next send is measured from.
        if v_slow_mode then
            update hark.room_members m set last_sent_at = v_now
            from (select split_part(key, '/', 2)::uuid as room_id, split_part(key, '/', 3)::uuid as user_id
                  from jsonb_object_keys(v_pending) key where key like 'slow/%') slow
            where m.tenant_id = v_tenant and m.room_id = slow.room_id and m.user_id = slow.user_id;
        end if;
    end loop;
    return to_jsonb(v_results);
end
$$;
