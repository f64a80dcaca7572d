-- Messages, their edit history, reactions, read markers and the room event log as
-- clients read it.

-- The one bound on a page by bytes: of items given nearest the cursor first, those
-- whose JSON adds up to p_max_bytes at most, and always the first, so that paging on
-- always moves. Every page a client or a subscriber reads (history, the event log,
-- edit history) is cut by it.
create function hark_api.page_within(p_items jsonb, p_max_bytes integer)
returns jsonb
language sql
immutable
as $$
    select coalesce(jsonb_agg(sized.item order by sized.n), '[]'::jsonb)
    from (
        select e.item, e.n, sum(octet_length(e.item::text)) over (order by e.n) as running
        from jsonb_array_elements(p_items) with ordinality as e(item, n)
    ) sized
    where sized.n = 1 or sized.running <= p_max_bytes;
$$;

-- The shape of a message, with its sender as shown and the given reactions: the one
-- builder of a message's JSON (answers, events and batches alike). PL/pgSQL rather
-- than SQL so that its plans are cached across calls: it runs once per message sent.
-- What only some messages have (a thread, mentions, a pin) is added only to those:
-- most messages have none, and every key costs each send and each event's bytes.
create function hark_api.message_json_of(p_message hark.messages, p_sender jsonb, p_reactions jsonb)
returns jsonb
language plpgsql
stable
as $$
declare
    v_json jsonb;
begin
    v_json := jsonb_build_object(
        'id', p_message.id,
        'room_id', p_message.room_id,
        'seq', p_message.seq,
        'sender', p_sender,
        'kind', p_message.kind,
        'body', p_message.body,
        'attachment', p_message.attachment,
        'reply_to_id', p_message.reply_to_id,
        'client_id', p_message.client_id,
        'created_at', p_message.created_at,
        'edited_at', p_message.edited_at,
        'deleted', p_message.deleted_at is not null,
        'deleted_at', p_message.deleted_at,
        'reactions', p_reactions);
    if p_message.parent_id is not null then
        v_json := v_json || jsonb_build_object(
            'parent_id', p_message.parent_id, 'show_in_room', p_message.show_in_room);
    end if;
    if p_message.reply_count > 0 then
        v_json := v_json || jsonb_build_object(
            'reply_count', p_message.reply_count, 'last_reply_at', p_message.last_reply_at,
            'thread_participants', to_jsonb(p_message.thread_participants));
    end if;
    if p_message.mention_room or cardinality(p_message.mentions) > 0 then
        v_json := v_json || jsonb_build_object(
            'mentions', to_jsonb(p_message.mentions), 'mention_room', p_message.mention_room);
    end if;
    if p_message.pinned_at is not null then
        v_json := v_json || jsonb_build_object('pinned_at', p_message.pinned_at, 'pinned_by', p_message.pinned_by);
    end if;
    return v_json;
end
$$;

-- The shape of a message, with the given reactions.
create function hark_api.message_json_with(p_message hark.messages, p_reactions jsonb)
returns jsonb
language plpgsql
stable
as $$
begin
    return hark_api.message_json_of(p_message, hark_api.user_ref(p_message.sender_id), p_reactions);
end
$$;

-- The shape of a message. With a viewer, each reaction says whether the viewer made
-- it (`me`); events are shared by every viewer and carry no `me`.
create function hark_api.message_json(p_message hark.messages, p_viewer_id uuid)
returns jsonb
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return hark_api.message_json_with(p_message, coalesce((
        select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'emoji', r.emoji,
                   'count', r.count,
                   'me', case when p_viewer_id is not null then r.me end))
               order by r.first_at, r.emoji)
        from (
            select emoji, count(*) as count, bool_or(user_id = p_viewer_id) as me, min(created_at) as first_at
            from hark.reactions
            where tenant_id = v_current_tenant and message_id = p_message.id
            group by emoji
        ) r), '[]'::jsonb));
end
$$;

create function hark_api.event_json(p_event hark.room_events)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'room_id', p_event.room_id,
        'seq', p_event.seq,
        'type', p_event.type,
        'actor_id', p_event.actor_id,
        'at', p_event.created_at,
        'data', p_event.data)
$$;

-- Messages of others in the main timeline after the read marker, tombstones excluded,
-- counted up to 100 (clients show "99+"), so that a count costs a bounded index range
-- however large the backlog. Replies in threads count in their thread.
create function hark_api.unread_count(p_room_id uuid, p_last_read_seq bigint)
returns bigint
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (
        select count(*)
        from (
            select 1
            from hark.messages
            where tenant_id = v_current_tenant and room_id = p_room_id
              and seq > p_last_read_seq
              and deleted_at is null
              and (parent_id is null or show_in_room)
              and sender_id is distinct from hark_api.current_user_id()
            order by seq
            limit 100
        ) capped);
end
$$;

-- Checks a message's content: kind, body size, attachment metadata.
create function hark_api.validate_message(p_kind text, p_body text, p_attachment jsonb, p_max_body_bytes integer)
returns void
language plpgsql
as $$
declare
    v_url text;
begin
    if p_kind is null or p_kind not in ('text', 'image', 'file', 'system') then
        perform hark_api.fail(422, 'invalid_kind', 'The kind must be text, image, file or system', 'kind');
    end if;
    if octet_length(coalesce(p_body, '')) > p_max_body_bytes then
        perform hark_api.fail(422, 'body_too_long', format('The body must be at most %s bytes', p_max_body_bytes), 'body');
    end if;
    if p_kind in ('text', 'system') and char_length(btrim(coalesce(p_body, ''), E' \t\r\n')) = 0 then
        perform hark_api.fail(422, 'empty_body', 'A text message needs a body', 'body');
    end if;
    if p_kind in ('image', 'file') and p_attachment is null then
        perform hark_api.fail(422, 'attachment_required', 'Image and file messages need an attachment', 'attachment');
    end if;
    if p_attachment is not null then
        v_url := p_attachment ->> 'url';
        if jsonb_typeof(p_attachment) <> 'object' or v_url is null or octet_length(v_url) > 2048
           or v_url !~ '^https?://[!-~]+$' then
            perform hark_api.fail(422, 'invalid_attachment', 'The attachment needs an http(s) URL of at most 2048 characters', 'attachment.url');
        end if;
        if char_length(coalesce(p_attachment ->> 'mime_type', '')) > 255 then
            perform hark_api.fail(422, 'invalid_attachment', 'The MIME type must be at most 255 characters', 'attachment.mime_type');
        end if;
        if char_length(coalesce(p_attachment ->> 'name', '')) > 255 then
            perform hark_api.fail(422, 'invalid_attachment', 'The file name must be at most 255 characters', 'attachment.name');
        end if;
        if p_attachment ? 'size' and (jsonb_typeof(p_attachment -> 'size') <> 'number' or (p_attachment ->> 'size')::numeric < 0) then
            perform hark_api.fail(422, 'invalid_attachment', 'The size must be a number of bytes', 'attachment.size');
        end if;
    end if;
end
$$;

-- What the send rules need of a room, taken under its lock: its id, whether it is
-- archived or direct, its slow mode, its tenant's word filters (p_filters,
-- hark_api.filter_patterns, which a batch reads once per tenant), and whether its
-- members may mention the whole room.
create function hark_api.send_context(p_room hark.rooms, p_filters jsonb)
returns jsonb
language sql
immutable
as $$
    select jsonb_build_object(
        'id', p_room.id, 'archived', p_room.archived_at is not null, 'direct', p_room.kind = 'direct',
        'slow_mode_seconds', p_room.slow_mode_seconds, 'filters', p_filters,
        'members_can_mention_room', p_room.members_can_mention_room)
$$;

-- What a send says of threads and mentions: the thread's first message it replies in
-- (one level), whether such a reply also shows in the room's main timeline, the
-- members it mentions, and whether it mentions the whole room.
create type hark_api.thread_and_mentions as (
    parent_id uuid,
    show_in_room boolean,
    mentions uuid[],
    mention_room boolean
);

-- Whether a message is in the room's main timeline: every message but the replies in a
-- thread that were not sent to the room too.
create function hark_api.shown_in_room(p_thread hark_api.thread_and_mentions)
returns boolean
language sql
immutable
as $$
    select p_thread.parent_id is null or coalesce(p_thread.show_in_room, false)
$$;

-- The users a message mentions, each once, in the order given. PL/pgSQL, so that a
-- send without mentions costs a test, not the planning of the query (a SQL function
-- that is not inlined is planned on every call: 37 µs per message in a batch).
create function hark_api.mention_ids(p_thread hark_api.thread_and_mentions, p_sender_id uuid)
returns uuid[]
language plpgsql
immutable
as $$
begin
    if coalesce(cardinality(p_thread.mentions), 0) = 0 then
        return '{}';
    end if;
    return (select coalesce(array_agg(given.id order by given.first), '{}')
            from (select u.id, min(u.n) as first
                  from unnest(p_thread.mentions) with ordinality as u(id, n)
                  where u.id is not null
                  group by u.id) given);
end
$$;

-- The rules of sending, the one copy of them: hark_api.message_send,
-- hark_api.message_send_batch and the backend's system messages call it, under the
-- room's lock, with the sender's hark_api.sender_state in the room (its role, null
-- when not a member, and the end of a mute) and the room's hark_api.send_context.
-- p_pending holds what a batch accepted before this item and has not written yet: the
-- message JSON by "room/sender/client id", the room of each new message by its id
-- ("reply/<id>" for the replies in a thread), "slow/room/sender" for senders held
-- to slow mode, and the tenant's send allowance left (hark_api.allowance_key) when it
-- has send quotas. Answers the earlier message with the same client id (the send is
-- answered with it and writes nothing), or null: the message may be sent (and, when a
-- 'flag' word filter matched it, it is in the moderation queue as p_message_id).
create function hark_api.message_check(
    p_sender jsonb, p_room jsonb, p_user_id uuid, p_message_id uuid,
    p_kind text, p_body text, p_attachment jsonb, p_reply_to_id uuid, p_client_id text,
    p_max_body_bytes integer, p_pending jsonb, p_thread hark_api.thread_and_mentions)
returns jsonb
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    p_room_id uuid := (p_room ->> 'id')::uuid;
    p_role text := p_sender ->> 'role';
    v_key text;
    v_existing hark.messages;
begin
    -- One statement for both (each PERFORM is a run of the executor); in this order.
    perform hark_api.require_role(p_role), hark_api.require_open((p_room ->> 'archived')::boolean);
    if p_client_id is not null then
        if char_length(p_client_id) not between 1 and 100 then
            perform hark_api.fail(422, 'invalid_client_id', 'The client id must be 1 to 100 characters', 'client_id');
        end if;
        v_key := p_room_id || '/' || p_user_id || '/' || p_client_id;
        if p_pending ? v_key then
            return p_pending -> v_key;
        end if;
        select * into v_existing from hark.messages
        where tenant_id = v_current_tenant and room_id = p_room_id
          and sender_id = p_user_id and client_id = p_client_id;
        if v_existing.id is not null then
            return hark_api.message_json(v_existing, p_user_id);
        end if;
    end if;
    perform hark_api.validate_message(p_kind, p_body, p_attachment, p_max_body_bytes);
    if p_pending ? hark_api.allowance_key(v_current_tenant) then
        perform hark_api.require_send_allowance(
            p_pending -> hark_api.allowance_key(v_current_tenant), p_attachment);
    end if;
    if p_kind = 'system' and p_role not in ('owner', 'admin') then
        perform hark_api.fail(403, 'forbidden', 'Only owners and admins of the room send system messages');
    end if;
    if p_reply_to_id is not null
       and coalesce(p_pending ->> p_reply_to_id::text, p_pending ->> ('reply/' || p_reply_to_id))
           is distinct from p_room_id::text
       and not exists (select 1 from hark.messages
                       where tenant_id = v_current_tenant and id = p_reply_to_id
                         and room_id = p_room_id) then
        perform hark_api.fail(422, 'invalid_reply_to', 'The message replied to is not in this room', 'reply_to_id');
    end if;
    if p_thread.parent_id is not null then
        perform hark_api.thread_parent_check(p_room_id, p_thread.parent_id, p_pending);
    end if;
    if cardinality(p_thread.mentions) > 0 or p_thread.mention_room then
        perform hark_api.mentions_check(p_room, p_role, p_thread.mentions, p_thread.mention_room);
    end if;
    -- Each moderation rule is called only when it may apply (a mute on record, a
    -- direct room, slow mode, filters): a send in a room without any pays for the
    -- tests alone, not for function calls.
    if p_user_id is not null then
        if p_sender ->> 'muted_until' is not null then
            perform hark_api.require_not_muted((p_sender ->> 'muted_until')::timestamptz);
        end if;
        if (p_room ->> 'direct')::boolean then
            perform hark_api.require_not_blocked(p_room_id, p_user_id);
        end if;
        if (p_room ->> 'slow_mode_seconds')::integer > 0 then
            perform hark_api.slow_mode_check(p_room_id, p_user_id, p_role,
                                             (p_room ->> 'slow_mode_seconds')::integer, p_pending);
        end if;
    end if;
    if jsonb_typeof(p_room -> 'filters') = 'object' and hark_api.filter_check(p_body, p_room -> 'filters') then
        perform hark_api.flag_message(p_room_id, p_message_id, p_user_id, jsonb_build_object(
            'id', p_message_id, 'room_id', p_room_id, 'sender', hark_api.user_ref(p_user_id),
            'kind', p_kind, 'body', p_body, 'attachment', p_attachment));
    end if;
    return null;
end
$$;

-- Sends a message. A client id makes the send idempotent: sending again with the same
-- client id answers the original message (created = false) and writes nothing. The
-- rules are hark_api.message_check's; p_traceparent, when the send is traced, rides
-- in its notification.
create function hark_api.message_send(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid,
    p_room_id uuid, p_message_id uuid, p_kind text, p_body text, p_attachment jsonb,
    p_reply_to_id uuid, p_client_id text, p_max_body_bytes integer, p_traceparent text,
    p_wait boolean, p_parent_id uuid, p_show_in_room boolean, p_mentions uuid[], p_mention_room boolean)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_thread hark_api.thread_and_mentions := row(
        p_parent_id, p_show_in_room, p_mentions, p_mention_room)::hark_api.thread_and_mentions;
    v_existing jsonb;
    v_pending jsonb;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id, p_wait);
    v_pending := hark_api.lone_send_pending(p_tenant_id);
    v_existing := hark_api.message_check(
        hark_api.sender_state(p_room_id), hark_api.send_context(v_room, hark_api.filter_patterns()),
        p_user_id, p_message_id,
        p_kind, p_body, p_attachment, p_reply_to_id, p_client_id, p_max_body_bytes, v_pending, v_thread);
    if v_existing is not null then
        return jsonb_build_object('created', false, 'message', v_existing);
    end if;
    return hark_api.message_write(v_room, p_message_id, p_user_id, p_kind, p_body, p_attachment,
                                  p_reply_to_id, p_client_id, p_traceparent, v_thread, v_pending);
end
$$;

-- Writes one checked message under its room's lock (p_room as locked) and appends its
-- event; answers the send's result. A null sender is a system message of the backend.
-- In slow mode, the sender's last_sent_at moves to now. p_pending is what the check
-- had pending: the tenant's send allowance, when it has send quotas, which counts
-- the message.
create function hark_api.message_write(
    p_room hark.rooms, p_message_id uuid, p_user_id uuid, p_kind text, p_body text, p_attachment jsonb,
    p_reply_to_id uuid, p_client_id text, p_traceparent text, p_thread hark_api.thread_and_mentions,
    p_pending jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_message hark.messages;
    v_json jsonb;
begin
    insert into hark.messages (tenant_id, id, room_id, seq, sender_id, kind, body, attachment, reply_to_id, client_id,
                               parent_id, show_in_room, mentions, mention_room)
    values (p_room.tenant_id, p_message_id, p_room.id, p_room.last_seq + 1, p_user_id, p_kind, coalesce(p_body, ''),
            p_attachment, p_reply_to_id, p_client_id,
            p_thread.parent_id, hark_api.shown_in_room(p_thread), hark_api.mention_ids(p_thread, p_user_id),
            coalesce(p_thread.mention_room, false))
    returning * into v_message;
    -- A new message has no reactions: its shape is built once, for the event and the answer.
    v_json := hark_api.message_json_with(v_message, '[]'::jsonb);
    if hark_api.append_events(p_room.id, jsonb_build_array(jsonb_build_object(
           'type', 'message.created', 'data', v_json)), p_traceparent) <> v_message.seq then
        raise exception 'seq mismatch: message % got seq % but not its event', v_message.id, v_message.seq;
    end if;
    if v_message.parent_id is not null or v_message.mention_room or cardinality(v_message.mentions) > 0 then
        perform hark_api.conversation_written(p_room.tenant_id, array[v_message]);
    end if;
    if p_room.slow_mode_seconds > 0 and p_user_id is not null then
        update hark.room_members set last_sent_at = v_now
        where tenant_id = p_room.tenant_id and room_id = p_room.id and user_id = p_user_id;
    end if;
    if p_pending ? hark_api.allowance_key(p_room.tenant_id) then
        perform hark_api.send_counted(p_pending -> hark_api.allowance_key(p_room.tenant_id),
                                      1, hark_api.attachment_bytes(p_attachment));
    end if;
    return jsonb_build_object('created', true, 'message', v_json);
end
$$;

-- Finds a message of a room, or fails with 404.
create function hark_api.find_message(p_room_id uuid, p_message_id uuid, p_lock boolean)
returns hark.messages
language plpgsql
as $$
declare
    v_message hark.messages;
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    if p_lock then
        select * into v_message from hark.messages
        where tenant_id = v_current_tenant and id = p_message_id and room_id = p_room_id for update;
    else
        select * into v_message from hark.messages
        where tenant_id = v_current_tenant and id = p_message_id and room_id = p_room_id;
    end if;
    if v_message.id is null then
        perform hark_api.fail(404, 'message_not_found', 'No such message in this room');
    end if;
    return v_message;
end
$$;

-- A room must exist in the tenant (404) and the caller must be a member (403).
create function hark_api.require_readable(p_room_id uuid)
returns text
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    if not exists (select 1 from hark.rooms where tenant_id = v_current_tenant and id = p_room_id) then
        perform hark_api.fail(404, 'room_not_found', 'No such room');
    end if;
    return hark_api.require_member(p_room_id);
end
$$;

-- A page of a room's main timeline in seq order: the newest page, or the page before,
-- after or around a seq. Tombstones are included, so that seqs show no holes but the
-- replies in threads not sent to the room too, which their thread lists.
-- A page of history: p_limit messages at most, and p_max_bytes of JSON at most (always
-- one): the messages nearest the cursor are kept, so the client pages on from there.
create function hark_api.message_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid,
    p_before bigint, p_after bigint, p_around bigint, p_limit integer, p_max_bytes integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_first bigint;
    v_last bigint;
    v_blocked uuid[];
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    v_blocked := hark_api.blocked_by(p_user_id);
    perform hark_api.check_limit(p_limit, 200);
    if (p_before is not null)::int + (p_after is not null)::int + (p_around is not null)::int > 1 then
        perform hark_api.fail(422, 'conflicting_cursors', 'Give at most one of before, after and around', 'before');
    end if;
    if least(p_before, p_after, p_around) < 0 then
        perform hark_api.fail(422, 'invalid_seq', 'A seq is never negative', 'before');
    end if;
    with page as (
        (select m.* from hark.messages m
         where m.tenant_id = p_tenant_id and m.room_id = p_room_id and p_after is not null and m.seq > p_after
           and (m.parent_id is null or m.show_in_room)
         order by m.seq limit p_limit)
        union all
        (select m.* from hark.messages m
         where m.tenant_id = p_tenant_id and m.room_id = p_room_id and p_after is null and p_around is null
           and (m.parent_id is null or m.show_in_room)
           and (p_before is null or m.seq < p_before)
         order by m.seq desc limit p_limit)
        union all
        (select m.* from hark.messages m
         where m.tenant_id = p_tenant_id and m.room_id = p_room_id and p_around is not null and m.seq <= p_around
           and (m.parent_id is null or m.show_in_room)
         order by m.seq desc limit (p_limit + 1) / 2)
        union all
        (select m.* from hark.messages m
         where m.tenant_id = p_tenant_id and m.room_id = p_room_id and p_around is not null and m.seq > p_around
           and (m.parent_id is null or m.show_in_room)
         order by m.seq limit p_limit / 2)
    ), kept as (
        -- Nearest the cursor first, cut by bytes, then in seq order.
        select e.item from jsonb_array_elements(hark_api.page_within((
            select jsonb_agg(hark_api.hide_blocked(hark_api.message_json(row(page.*)::hark.messages, p_user_id), v_blocked) order by
                       case when p_after is not null then page.seq - p_after
                            when p_before is not null then p_before - page.seq
                            when p_around is not null then abs(page.seq - p_around)
                            else -page.seq end, page.seq)
            from page), p_max_bytes)) as e(item)
    )
    select coalesce(jsonb_agg(kept.item order by (kept.item ->> 'seq')::bigint), '[]'::jsonb),
           min((kept.item ->> 'seq')::bigint), max((kept.item ->> 'seq')::bigint)
    into v_items, v_first, v_last
    from kept;
    return jsonb_build_object(
        'items', v_items,
        'has_more_before', v_first is not null and exists (
            select 1 from hark.messages where tenant_id = p_tenant_id and room_id = p_room_id and seq < v_first
                                            and (parent_id is null or show_in_room)),
        'has_more_after', v_last is not null and exists (
            select 1 from hark.messages where tenant_id = p_tenant_id and room_id = p_room_id and seq > v_last
                                            and (parent_id is null or show_in_room)));
end
$$;

create function hark_api.message_get(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_message_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    return hark_api.hide_blocked(hark_api.message_json(hark_api.find_message(p_room_id, p_message_id, false), p_user_id),
                                 hark_api.blocked_by(p_user_id));
end
$$;

-- Edits a message (its author only). The version it replaces goes into the history.
-- New mentions replace the old (null keeps them): a mention taken out stops counting.
create function hark_api.message_edit(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_message_id uuid,
    p_body text, p_attachment jsonb, p_keep_attachment boolean, p_max_body_bytes integer,
    p_max_edits integer, p_mentions uuid[], p_mention_room boolean)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_room hark.rooms;
    v_message hark.messages;
    v_attachment jsonb;
    v_edits integer;
    v_flag boolean;
    v_role text;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    v_role := hark_api.require_member(p_room_id);
    v_message := hark_api.find_message(p_room_id, p_message_id, true);
    if v_message.sender_id is distinct from p_user_id then
        perform hark_api.fail(403, 'not_the_author', 'Only the author may edit a message');
    end if;
    if v_message.deleted_at is not null then
        perform hark_api.fail(409, 'message_deleted', 'The message has been deleted');
    end if;
    perform hark_api.require_not_archived(v_room);
    perform hark_api.require_may_post(p_room_id, p_user_id, v_room.kind = 'direct');
    v_attachment := case when p_keep_attachment then v_message.attachment else p_attachment end;
    perform hark_api.validate_message(v_message.kind, p_body, v_attachment, p_max_body_bytes);
    v_flag := hark_api.filter_check(p_body, hark_api.filter_patterns());
    -- The edit history is bounded, so that no message's history grows without end.
    select coalesce(max(version), 0) into v_edits
    from hark.message_edits where tenant_id = p_tenant_id and message_id = p_message_id;
    if v_edits >= p_max_edits then
        perform hark_api.fail(422, 'too_many_edits',
            format('A message may be edited %s times at most', p_max_edits));
    end if;
    insert into hark.message_edits (tenant_id, message_id, version, body, attachment, created_at)
    values (p_tenant_id, p_message_id, v_edits + 1,
            v_message.body, v_message.attachment, coalesce(v_message.edited_at, v_message.created_at));
    update hark.messages
    set body = coalesce(p_body, ''), attachment = v_attachment, edited_at = v_now
    where tenant_id = p_tenant_id and id = p_message_id
    returning * into v_message;
    v_message := hark_api.mentions_edit(v_room, v_role, v_message, p_mentions, p_mention_room);
    perform hark_api.append_event(p_room_id, 'message.edited', hark_api.message_json(v_message, null));
    if v_flag then
        -- A message flagged before is queued once; an edit that matches is queued anew
        -- only if nothing of it was queued.
        perform hark_api.flag_message(p_room_id, p_message_id, p_user_id, hark_api.message_json(v_message, null));
    end if;
    return hark_api.message_json(v_message, p_user_id);
end
$$;

-- The earlier versions of a message, oldest first (members): the versions after
-- p_after, p_limit at most and p_max_bytes of JSON at most (always one).
create function hark_api.message_versions(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_message_id uuid,
    p_after integer, p_limit integer, p_max_bytes integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_last integer;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    perform hark_api.find_message(p_room_id, p_message_id, false);
    perform hark_api.check_limit(p_limit, 100);
    if p_after is null or p_after < 0 then
        perform hark_api.fail(422, 'invalid_version', 'The version must be zero or more', 'after');
    end if;
    v_items := hark_api.page_within(coalesce((
        select jsonb_agg(jsonb_build_object(
                   'version', page.version, 'body', page.body, 'attachment', page.attachment,
                   'created_at', page.created_at, 'replaced_at', page.replaced_at)
               order by page.version)
        from (
            select * from hark.message_edits e
            where e.tenant_id = p_tenant_id and e.message_id = p_message_id and e.version > p_after
            order by e.version
            limit p_limit
        ) page), '[]'::jsonb), p_max_bytes);
    v_last := (v_items -> -1 ->> 'version')::integer;
    return jsonb_build_object(
        'message_id', p_message_id,
        'items', v_items,
        'has_more', v_last is not null and exists (
            select 1 from hark.message_edits
            where tenant_id = p_tenant_id and message_id = p_message_id and version > v_last));
end
$$;

-- Makes a message (locked) a tombstone: its earlier versions and its mentions are
-- erased, it is no longer pinned, and
-- message.deleted says so; a deletion by someone else than the author is audited.
-- Deleting a tombstone changes nothing.
create function hark_api.delete_message(p_room_id uuid, p_message hark.messages)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    if p_message.deleted_at is not null then
        return;
    end if;
    update hark.messages set body = '', attachment = null, deleted_at = v_now, pinned_at = null, pinned_by = null
    where tenant_id = v_current_tenant and id = p_message.id;
    delete from hark.message_edits where tenant_id = v_current_tenant and message_id = p_message.id;
    delete from hark.mentions where tenant_id = p_message.tenant_id and message_id = p_message.id;
    perform hark_api.append_event(p_room_id, 'message.deleted', jsonb_build_object(
        'message_id', p_message.id,
        'message_seq', p_message.seq,
        'deleted_by', hark_api.user_ref(hark_api.current_user_id())));
    if p_message.sender_id is distinct from hark_api.current_user_id() then
        perform hark_api.audit('message.delete', 'message', p_message.id, p_room_id, null,
            jsonb_build_object('sender_id', p_message.sender_id, 'seq', p_message.seq));
    end if;
end
$$;

-- Deletes a message: its author (a member), an owner or admin of the room, or a
-- moderator of the tenant, member of the room or not.
create function hark_api.message_delete(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_message_id uuid)
returns void
language plpgsql
as $$
declare
    v_role text;
    v_message hark.messages;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.lock_room(p_room_id);
    v_role := hark_api.member_role(p_room_id);
    if v_role is null and not hark_api.is_tenant_moderator() then
        perform hark_api.require_role(v_role);
    end if;
    v_message := hark_api.find_message(p_room_id, p_message_id, true);
    if v_message.sender_id is distinct from p_user_id and coalesce(v_role, '') not in ('owner', 'admin')
       and not hark_api.is_tenant_moderator() then
        perform hark_api.fail(403, 'forbidden', 'Only the author, an owner or admin of the room or a moderator may delete a message');
    end if;
    perform hark_api.delete_message(p_room_id, v_message);
end
$$;

-- Adds (p_add) or removes a reaction of the caller; doing either twice changes nothing.
create function hark_api.reaction_set(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_message_id uuid,
    p_emoji text, p_add boolean, p_max_per_user integer)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_message hark.messages;
    v_count bigint;
    v_changed integer;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_member(p_room_id);
    v_message := hark_api.find_message(p_room_id, p_message_id, false);
    perform hark_api.require_not_archived(v_room);
    perform hark_api.require_may_post(p_room_id, p_user_id, v_room.kind = 'direct');
    if v_message.deleted_at is not null then
        perform hark_api.fail(409, 'message_deleted', 'The message has been deleted');
    end if;
    if p_emoji is null or char_length(p_emoji) not between 1 and 32 or p_emoji ~ '\s' then
        perform hark_api.fail(422, 'invalid_emoji', 'The emoji must be 1 to 32 characters without spaces', 'emoji');
    end if;
    -- Counted under the room lock, so concurrent reactions cannot get past the bound.
    if p_add and (select count(*) from hark.reactions
                  where tenant_id = p_tenant_id and message_id = p_message_id and user_id = p_user_id and emoji <> p_emoji)
                 >= p_max_per_user then
        perform hark_api.fail(422, 'too_many_reactions',
            format('A user may put at most %s different reactions on one message', p_max_per_user), 'emoji');
    end if;
    if p_add then
        insert into hark.reactions (tenant_id, message_id, user_id, emoji)
        values (p_tenant_id, p_message_id, p_user_id, p_emoji)
        on conflict do nothing;
    else
        delete from hark.reactions where tenant_id = p_tenant_id and message_id = p_message_id and user_id = p_user_id and emoji = p_emoji;
    end if;
    get diagnostics v_changed = row_count;
    if v_changed > 0 then
        v_count := (select count(*) from hark.reactions
                    where tenant_id = p_tenant_id and message_id = p_message_id and emoji = p_emoji);
        perform hark_api.append_event(p_room_id, case when p_add then 'reaction.added' else 'reaction.removed' end,
            jsonb_build_object(
                'message_id', p_message_id,
                'message_seq', v_message.seq,
                'emoji', p_emoji,
                'user', hark_api.user_ref(p_user_id),
                'count', v_count));
    end if;
    return hark_api.message_json(v_message, p_user_id);
end
$$;

-- Moves the caller's read marker forward to p_seq (never back, never past the end).
create function hark_api.mark_read(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_seq bigint)
returns jsonb
language plpgsql
as $$
declare
    v_last_read bigint;
    v_before bigint;
    v_unread bigint;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    if p_seq is null or p_seq < 0 then
        perform hark_api.fail(422, 'invalid_seq', 'The seq must be zero or more', 'seq');
    end if;
    select last_read_seq into v_before from hark.room_members
    where tenant_id = p_tenant_id and room_id = p_room_id and user_id = p_user_id
    for update;
    update hark.room_members m
    set last_read_seq = greatest(m.last_read_seq, least(p_seq, r.last_seq))
    from hark.rooms r
    where m.tenant_id = p_tenant_id and r.tenant_id = m.tenant_id and r.id = m.room_id
      and m.room_id = p_room_id and m.user_id = p_user_id
    returning m.last_read_seq into v_last_read;
    v_unread := hark_api.unread_count(p_room_id, v_last_read);
    update hark.room_members
    set has_unread = v_unread > 0
    where tenant_id = p_tenant_id and room_id = p_room_id and user_id = p_user_id
      and has_unread <> (v_unread > 0);
    -- A read marker that moved is a signal for the room's subscribers (read
    -- receipts, the reader's other devices), like typing: by NOTIFY, not in the log.
    if v_last_read > coalesce(v_before, 0) then
        perform hark_api.publish_signal(p_tenant_id, p_room_id, 'read', jsonb_build_object(
            'user', hark_api.user_ref(p_user_id), 'seq', v_last_read));
        -- The reader's other devices and clients update the room's badge from the feed.
        perform hark_api.feed_append(array[p_user_id], 'feed.read',
            hark_api.feed_room(p_room_id) || jsonb_build_object(
                'seq', v_last_read, 'unread_count', v_unread));
    end if;
    return jsonb_build_object(
        'room_id', p_room_id,
        'last_read_seq', v_last_read,
        'unread_count', v_unread,
        'mention_count', hark_api.mention_count(p_tenant_id, p_user_id, p_room_id, v_last_read));
end
$$;

-- Unread messages and mentions per room (rooms with neither left out) and in total.
create function hark_api.unread_summary(p_tenant_id uuid, p_user_id uuid, p_session_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_rooms jsonb;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    select coalesce(jsonb_agg(jsonb_build_object(
               'room_id', counts.room_id, 'unread_count', counts.unread, 'mention_count', counts.mentions)
               order by counts.room_id), '[]'::jsonb)
    into v_rooms
    from (
        -- offset 0 keeps the subquery from being flattened, which would count twice.
        select m.room_id, hark_api.unread_count(m.room_id, m.last_read_seq) as unread,
               hark_api.mention_count(p_tenant_id, p_user_id, m.room_id, m.last_read_seq) as mentions
        from hark.room_members m
        where m.tenant_id = p_tenant_id and m.user_id = p_user_id
        offset 0
    ) counts
    where counts.unread > 0 or counts.mentions > 0;
    return jsonb_build_object(
        'total', (select coalesce(sum((room ->> 'unread_count')::bigint), 0) from jsonb_array_elements(v_rooms) room),
        'mention_total',
            (select coalesce(sum((room ->> 'mention_count')::bigint), 0) from jsonb_array_elements(v_rooms) room),
        'rooms', v_rooms);
end
$$;

-- A room's events after p_after_seq, in seq order (members).
-- A page of p_limit events at most, and of p_max_bytes of JSON at most (always one).
create function hark_api.event_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_after_seq bigint, p_limit integer,
    p_max_bytes integer)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    perform hark_api.check_limit(p_limit, 1000);
    if p_after_seq is null or p_after_seq < 0 then
        perform hark_api.fail(422, 'invalid_seq', 'The seq must be zero or more', 'after');
    end if;
    -- A reader behind the part retention removed would see the log go on after a gap
    -- it cannot tell from a missing event: it is told, as a subscriber gets reset.
    -- From the start (0) means from what the log holds.
    if p_after_seq > 0 and p_after_seq < (select events_to_seq from hark.room_retention
                                          where tenant_id = p_tenant_id and room_id = p_room_id) then
        perform hark_api.fail(410, 'log_trimmed',
            'The events after this seq are gone (retention): reload the room''s history and continue from its newest seq',
            'after');
    end if;
    return hark_api.log_page(p_tenant_id, p_room_id, p_after_seq, null, p_limit, p_max_bytes);
end
$$;

-- The one reader of a room's log, for the REST event log and the real-time core: the
-- events after p_after_seq (up to p_upto_seq when given) in seq order, p_limit at most
-- and p_max_bytes of JSON at most (always one, so that paging on always moves), with
-- the room's newest seq (null when the room is gone). The caller has entered the
-- tenant.
create function hark_api.log_page(
    p_tenant_id uuid, p_room_id uuid, p_after_seq bigint, p_upto_seq bigint, p_limit integer,
    p_max_bytes integer)
returns jsonb
language plpgsql
stable
as $$
begin
    return (select jsonb_build_object(
            'items', hark_api.page_within(coalesce((
                select jsonb_agg(hark_api.event_json(row(page.*)::hark.room_events) order by page.seq)
                from (
                    select * from hark.room_events e
                    where e.tenant_id = p_tenant_id and e.room_id = p_room_id
                      and e.seq > p_after_seq
                      and (p_upto_seq is null or e.seq <= p_upto_seq)
                    order by e.seq
                    limit p_limit
                ) page), '[]'::jsonb), p_max_bytes),
            'last_seq', (select last_seq from hark.rooms where tenant_id = p_tenant_id and id = p_room_id)));
end
$$;
