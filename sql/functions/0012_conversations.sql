-- Conversations (migration 0010): threads, mentions, pins and message search. The
-- send rules of threads and mentions are called from hark_api.message_check, and
-- their writes from the one writer of each path (hark_api.message_write,
-- hark_api.message_send_batch) through hark_api.conversation_written, so REST,
-- WebSocket, batched and acting sends keep them alike.

-- A reply's thread: its first message is a message of the room (or one a batch
-- accepted before it), not deleted, and not itself a reply (threads are one level).
create function hark_api.thread_parent_check(p_room_id uuid, p_parent_id uuid, p_pending jsonb)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_parent hark.messages;
begin
    if p_pending ? ('reply/' || p_parent_id) then
        perform hark_api.fail(422, 'invalid_parent', 'A reply in a thread cannot start a thread', 'parent_id');
    end if;
    if (p_pending ->> p_parent_id::text) = p_room_id::text then
        return;
    end if;
    select * into v_parent from hark.messages
    where tenant_id = v_current_tenant and id = p_parent_id and room_id = p_room_id;
    if v_parent.id is null then
        perform hark_api.fail(422, 'invalid_parent', 'The thread''s first message is not in this room', 'parent_id');
    end if;
    if v_parent.parent_id is not null then
        perform hark_api.fail(422, 'invalid_parent', 'A reply in a thread cannot start a thread', 'parent_id');
    end if;
    if v_parent.deleted_at is not null then
        perform hark_api.fail(422, 'invalid_parent', 'The thread''s first message has been deleted', 'parent_id');
    end if;
end
$$;

-- Mentions: at most 50 users, each a member of the room; the whole room only by its
-- owners and admins, or by anyone when the room lets members do it.
create function hark_api.mentions_check(p_room jsonb, p_role text, p_mentions uuid[], p_mention_room boolean)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_ids uuid[] := array(select distinct u from unnest(coalesce(p_mentions, '{}')) u where u is not null);
begin
    if cardinality(p_mentions) > 50 then
        perform hark_api.fail(422, 'too_many_mentions', 'A message mentions at most 50 users', 'mentions');
    end if;
    if cardinality(v_ids) <> cardinality(p_mentions) then
        perform hark_api.fail(422, 'invalid_mention', 'Each mention names a user once', 'mentions');
    end if;
    if cardinality(v_ids) > 0 and (
           select count(*) from hark.room_members
           where tenant_id = v_current_tenant and room_id = (p_room ->> 'id')::uuid
             and user_id = any (v_ids)) <> cardinality(v_ids) then
        perform hark_api.fail(422, 'invalid_mention', 'Only members of the room can be mentioned', 'mentions');
    end if;
    if p_mention_room and coalesce(p_role, '') not in ('owner', 'admin')
       and not coalesce((p_room ->> 'members_can_mention_room')::boolean, false) then
        perform hark_api.fail(403, 'mention_room_not_allowed',
            'Only owners and admins of this room may mention everyone in it', 'mention_room');
    end if;
end
$$;

-- The first p_max distinct users of a list, in the order of their first appearance.
create function hark_api.first_users(p_users uuid[], p_max integer)
returns uuid[]
language sql
immutable
as $$
    select coalesce(array_agg(firsts.id order by firsts.first), '{}')
    from (select u.id, min(u.n) as first
          from unnest(p_users) with ordinality as u(id, n)
          where u.id is not null
          group by u.id
          order by min(u.n)
          limit p_max) firsts
$$;

-- What written messages (of one tenant, in seq order) change besides themselves:
-- each thread's summary on its first message (reply_count, last_reply_at, its first
-- five participants) and the read positions of who takes part (the author of the
-- first message, and each replier, who has read up to their own reply); and the
-- mentions, with a feed.mention for each user mentioned.
create function hark_api.conversation_written(p_tenant_id uuid, p_messages hark.messages[])
returns void
language plpgsql
as $$
begin
    with replies as (
        select r.parent_id, count(*) as n, max(r.created_at) as at,
               array_agg(r.sender_id order by r.seq) as senders
        from unnest(p_messages) r
        where r.parent_id is not null
        group by r.parent_id
    ), parents as (
        update hark.messages p
        set reply_count = p.reply_count + replies.n,
            last_reply_at = replies.at,
            thread_participants = hark_api.first_users(p.thread_participants || replies.senders, 5)
        from replies
        where p.tenant_id = p_tenant_id and p.id = replies.parent_id
        returning p.id, p.room_id, p.sender_id, p.seq
    )
    insert into hark.thread_reads (tenant_id, parent_id, user_id, room_id, last_read_seq)
    select p_tenant_id, parents.id, parents.sender_id, parents.room_id, parents.seq
    from parents where parents.sender_id is not null
    on conflict do nothing;
    insert into hark.thread_reads (tenant_id, parent_id, user_id, room_id, last_read_seq)
    select p_tenant_id, r.parent_id, r.sender_id, r.room_id, max(r.seq)
    from unnest(p_messages) r
    where r.parent_id is not null and r.sender_id is not null
    group by r.parent_id, r.sender_id, r.room_id
    on conflict (tenant_id, parent_id, user_id)
        do update set last_read_seq = greatest(hark.thread_reads.last_read_seq, excluded.last_read_seq);
    perform hark_api.mentions_write(p_tenant_id, m)
    from unnest(p_messages) m
    where m.mention_room or cardinality(m.mentions) > 0;
end
$$;

-- Records who a message mentions (the users it names, and every member for a
-- mention of the room; never its sender, nor who blocked the sender) that it did not
-- already, and tells each of them in their feed, and the tenant's webhooks
-- (notification.mention).
create function hark_api.mentions_write(p_tenant_id uuid, p_message hark.messages)
returns void
language plpgsql
as $$
declare
    v_added uuid[];
begin
    with added as (
        insert into hark.mentions (tenant_id, user_id, message_id, room_id, seq)
        select p_tenant_id, u.user_id, p_message.id, p_message.room_id, p_message.seq
        from (select unnest(p_message.mentions) as user_id
              union
              select m.user_id from hark.room_members m
              where p_message.mention_room and m.tenant_id = p_tenant_id and m.room_id = p_message.room_id) u
        where u.user_id is distinct from p_message.sender_id
          -- A block hides the sender's messages from the blocker; it does not let the
          -- sender reach them with a mention either.
          and not coalesce(p_message.sender_id = any (hark_api.blocked_by(u.user_id)), false)
        on conflict do nothing
        returning user_id)
    select array_agg(user_id order by user_id) into v_added from added;
    if v_added is not null then
        perform hark_api.feed_append(v_added, 'feed.mention',
            hark_api.feed_room(p_message.room_id) || jsonb_build_object(
                'message_id', p_message.id, 'seq', p_message.seq, 'parent_id', p_message.parent_id,
                'sender', hark_api.user_ref(p_message.sender_id), 'mention_room', p_message.mention_room));
        -- For the tenant's backend to push, in the room's order of deliveries.
        perform hark_api.webhook_event(p_tenant_id, p_message.room_id, 'notification.mention', jsonb_build_object(
            'room_id', p_message.room_id, 'message', hark_api.message_json(p_message, null),
            'user_ids', to_jsonb(v_added)));
    end if;
end
$$;

-- An edit's new mentions (p_mentions null and p_mention_room null keep the old ones):
-- checked like a send's, and the mentions taken out no longer count.
create function hark_api.mentions_edit(
    p_room hark.rooms, p_role text, p_message hark.messages, p_mentions uuid[], p_mention_room boolean)
returns hark.messages
language plpgsql
as $$
declare
    v_thread hark_api.thread_and_mentions := row(
        null, null, coalesce(p_mentions, p_message.mentions), coalesce(p_mention_room, p_message.mention_room))::hark_api.thread_and_mentions;
    v_message hark.messages;
begin
    if p_mentions is null and p_mention_room is null then
        return p_message;
    end if;
    perform hark_api.mentions_check(hark_api.send_context(p_room, null), p_role,
                                    v_thread.mentions, v_thread.mention_room);
    update hark.messages
    set mentions = hark_api.mention_ids(v_thread, p_message.sender_id), mention_room = v_thread.mention_room
    where tenant_id = p_message.tenant_id and id = p_message.id
    returning * into v_message;
    delete from hark.mentions n
    where n.tenant_id = v_message.tenant_id and n.message_id = v_message.id
      and not (n.user_id = any (v_message.mentions))
      and not (v_message.mention_room and exists (
          select 1 from hark.room_members m
          where m.tenant_id = v_message.tenant_id and m.room_id = v_message.room_id and m.user_id = n.user_id));
    perform hark_api.mentions_write(v_message.tenant_id, v_message);
    return v_message;
end
$$;

-- Replies of others after p_last_read_seq in a thread, counted up to 100 like a
-- room's unread messages.
create function hark_api.thread_unread_count(p_parent_id uuid, p_last_read_seq bigint)
returns bigint
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select count(*) from (
            select 1 from hark.messages
            where tenant_id = v_current_tenant and parent_id = p_parent_id
              and seq > p_last_read_seq and deleted_at is null
              and sender_id is distinct from hark_api.current_user_id()
            order by seq
            limit 100) capped);
end
$$;

-- The first message of a thread in a room the caller reads, or 404.
create function hark_api.find_thread(p_room_id uuid, p_parent_id uuid)
returns hark.messages
language plpgsql
as $$
declare
    v_parent hark.messages;
begin
    v_parent := hark_api.find_message(p_room_id, p_parent_id, false);
    if v_parent.parent_id is not null then
        perform hark_api.fail(404, 'thread_not_found', 'This message is a reply, not the start of a thread');
    end if;
    return v_parent;
end
$$;

-- A page of a thread's replies in seq order, after p_after_seq: p_limit at most and
-- p_max_bytes of JSON at most (always one), with the thread's first message.
create function hark_api.reply_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_parent_id uuid,
    p_after_seq bigint, p_limit integer, p_max_bytes integer)
returns jsonb
language plpgsql
as $$
declare
    v_parent hark.messages;
    v_blocked uuid[];
    v_items jsonb;
    v_last bigint;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    perform hark_api.check_limit(p_limit, 200);
    if p_after_seq is null or p_after_seq < 0 then
        perform hark_api.fail(422, 'invalid_seq', 'The seq must be zero or more', 'after');
    end if;
    v_parent := hark_api.find_thread(p_room_id, p_parent_id);
    v_blocked := hark_api.blocked_by(p_user_id);
    v_items := hark_api.page_within(coalesce((
        select jsonb_agg(hark_api.hide_blocked(hark_api.message_json(row(page.*)::hark.messages, p_user_id), v_blocked) order by page.seq)
        from (
            select * from hark.messages m
            where m.tenant_id = p_tenant_id and m.parent_id = p_parent_id and m.seq > p_after_seq
            order by m.seq
            limit p_limit
        ) page), '[]'::jsonb), p_max_bytes);
    v_last := (v_items -> -1 ->> 'seq')::bigint;
    return jsonb_build_object(
        'parent', hark_api.hide_blocked(hark_api.message_json(v_parent, p_user_id), v_blocked),
        'items', v_items,
        'has_more', v_last is not null and exists (
            select 1 from hark.messages
            where tenant_id = p_tenant_id and parent_id = p_parent_id and seq > v_last));
end
$$;

-- A thread as listed: its first message, and for those who take part in it their
-- read position and unread replies (null for the others).
create function hark_api.thread_json(p_parent hark.messages, p_user_id uuid, p_blocked uuid[])
returns jsonb
language plpgsql
stable
as $$
declare
    v_read bigint;
begin
    select last_read_seq into v_read from hark.thread_reads
    where tenant_id = p_parent.tenant_id and parent_id = p_parent.id and user_id = p_user_id;
    return jsonb_build_object(
        'message', hark_api.hide_blocked(hark_api.message_json(p_parent, p_user_id), p_blocked),
        'participating', v_read is not null,
        'last_read_seq', v_read,
        'unread_count', case when v_read is not null then hark_api.thread_unread_count(p_parent.id, v_read) end);
end
$$;

-- The threads of a room, newest activity first, p_limit at a time after p_cursor.
create function hark_api.thread_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_cursor text, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_at timestamptz;
    v_id uuid;
    v_blocked uuid[];
    v_page hark.messages[];
    v_more boolean;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    perform hark_api.check_limit(p_limit, 100);
    select at, id into v_at, v_id from hark_api.parse_time_cursor(p_cursor) as c(at timestamptz, id uuid);
    v_blocked := hark_api.blocked_by(p_user_id);
    -- Run as a statement of its own parameters: planned inside this function, Citus
    -- sent the worker a query numbering a parameter it did not send.
    execute 'select array(
                 select row(m.*)::hark.messages from hark.messages m
                 where m.tenant_id = $1 and m.room_id = $2 and m.reply_count > 0
                   and ($3::timestamptz is null or (m.last_reply_at, m.id) < ($3, $4))
                 order by m.last_reply_at desc, m.id desc
                 limit $5 + 1)'
    into v_page
    using p_tenant_id, p_room_id, v_at, v_id, p_limit;
    v_more := cardinality(v_page) > p_limit;
    v_page := v_page[1:p_limit];
    return jsonb_build_object(
        'items', coalesce((select jsonb_agg(hark_api.thread_json(v_page[n], p_user_id, v_blocked) order by n)
                           from generate_subscripts(v_page, 1) as n), '[]'::jsonb),
        'next_cursor', case when v_more then
            hark_api.time_cursor(v_page[p_limit].last_reply_at, v_page[p_limit].id) end);
end
$$;

-- Moves the caller's read position in a thread forward to p_seq (never back, never
-- past its newest reply); reading a thread is taking part in it.
create function hark_api.thread_mark_read(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_parent_id uuid, p_seq bigint)
returns jsonb
language plpgsql
as $$
declare
    v_parent hark.messages;
    v_read bigint;
    v_newest bigint;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    if p_seq is null or p_seq < 0 then
        perform hark_api.fail(422, 'invalid_seq', 'The seq must be zero or more', 'seq');
    end if;
    v_parent := hark_api.find_thread(p_room_id, p_parent_id);
    -- Read first: Citus takes no subqueries in an INSERT's VALUES.
    v_newest := coalesce((select max(seq) from hark.messages where tenant_id = p_tenant_id and parent_id = p_parent_id), 0);
    insert into hark.thread_reads as t (tenant_id, parent_id, user_id, room_id, last_read_seq)
    values (p_tenant_id, p_parent_id, p_user_id, p_room_id, greatest(v_parent.seq, least(p_seq, v_newest)))
    on conflict (tenant_id, parent_id, user_id)
        do update set last_read_seq = greatest(t.last_read_seq, excluded.last_read_seq)
    returning t.last_read_seq into v_read;
    return jsonb_build_object(
        'parent_id', p_parent_id,
        'last_read_seq', v_read,
        'unread_count', hark_api.thread_unread_count(p_parent_id, v_read));
end
$$;

-- Mentions of others after the read marker in one room, up to 100.
create function hark_api.mention_count(p_tenant_id uuid, p_user_id uuid, p_room_id uuid, p_last_read_seq bigint)
returns bigint
language plpgsql
stable
as $$
begin
    return (select count(*) from (
            select 1 from hark.mentions
            where tenant_id = p_tenant_id and user_id = p_user_id and room_id = p_room_id and seq > p_last_read_seq
            order by seq
            limit 100) capped);
end
$$;

-- The messages that mention the caller, newest first, in the rooms they are in:
-- p_limit after the message p_before (null: from the newest).
create function hark_api.mention_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_before uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_blocked uuid[];
    v_page hark.messages[];
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.check_limit(p_limit, 100);
    v_blocked := hark_api.blocked_by(p_user_id);
    -- A statement of its own parameters (hark_api.thread_list's reason).
    execute 'select array(
                 select row(msg.*)::hark.messages from hark.mentions n
                 join hark.messages msg on msg.tenant_id = n.tenant_id and msg.id = n.message_id
                 join hark.room_members m
                   on m.tenant_id = n.tenant_id and m.room_id = n.room_id and m.user_id = n.user_id
                 where n.tenant_id = $1 and n.user_id = $2
                   and ($3::uuid is null or n.message_id < $3)
                   and msg.deleted_at is null
                 order by n.message_id desc
                 limit $4 + 1)'
    into v_page
    using p_tenant_id, p_user_id, p_before, p_limit;
    return jsonb_build_object(
        'items', coalesce((select jsonb_agg(hark_api.hide_blocked(hark_api.message_json(v_page[n], p_user_id),
                                                          v_blocked) order by n)
                           from generate_subscripts(v_page, 1) as n where n <= p_limit), '[]'::jsonb),
        'has_more', cardinality(v_page) > p_limit);
end
$$;

-- Pins or unpins a message: the room's owners and admins, or any member when the room
-- lets members pin; at most 50 pinned per room. Doing either twice changes nothing.
create function hark_api.message_pin(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_message_id uuid, p_pin boolean)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_room hark.rooms;
    v_role text;
    v_message hark.messages;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    v_role := hark_api.require_member(p_room_id);
    v_message := hark_api.find_message(p_room_id, p_message_id, true);
    perform hark_api.require_not_archived(v_room);
    if v_role not in ('owner', 'admin') and not v_room.members_can_pin then
        perform hark_api.fail(403, 'forbidden', 'Only owners and admins of this room may pin messages');
    end if;
    if v_message.deleted_at is not null then
        perform hark_api.fail(409, 'message_deleted', 'The message has been deleted');
    end if;
    if p_pin = (v_message.pinned_at is not null) then
        return hark_api.message_json(v_message, p_user_id);
    end if;
    -- Counted under the room's lock, so concurrent pins cannot pass the bound.
    if p_pin and (select count(*) from hark.messages
                  where tenant_id = p_tenant_id and room_id = p_room_id and pinned_at is not null) >= 50 then
        perform hark_api.fail(422, 'too_many_pins', 'A room has at most 50 pinned messages; unpin one first');
    end if;
    update hark.messages
    set pinned_at = case when p_pin then v_now end, pinned_by = case when p_pin then p_user_id end
    where tenant_id = p_tenant_id and id = p_message_id
    returning * into v_message;
    perform hark_api.append_event(p_room_id, case when p_pin then 'message.pinned' else 'message.unpinned' end,
        jsonb_build_object(
            'message_id', v_message.id,
            'message_seq', v_message.seq,
            'by', hark_api.user_ref(p_user_id),
            'pinned_at', v_message.pinned_at));
    return hark_api.message_json(v_message, p_user_id);
end
$$;

-- The pinned messages of a room, the most recently pinned first (members).
create function hark_api.pin_list(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_blocked uuid[];
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    v_blocked := hark_api.blocked_by(p_user_id);
    return jsonb_build_object('items', coalesce((
        select jsonb_agg(hark_api.hide_blocked(hark_api.message_json(row(m.*)::hark.messages, p_user_id), v_blocked)
                         order by m.pinned_at desc, m.id desc)
        from hark.messages m
        where m.tenant_id = p_tenant_id and m.room_id = p_room_id and m.pinned_at is not null), '[]'::jsonb));
end
$$;

-- A search query as a text search query: every word of it, folded, as a prefix (the
-- pairs of characters of a run without spaces, as hark.search_text indexes them).
-- Null when the query has no word (only punctuation or emoji).
create function hark_api.search_query(p_query text)
returns tsquery
language sql
immutable
as $$
    select to_tsquery('simple', string_agg(quote_literal(lexeme) || ':*', ' & '))
    from unnest(to_tsvector('simple', hark.search_text(p_query))) as words
    where not (char_length(lexeme) > 2
               and lexeme ~ '^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+$')
$$;

-- The part of a body around its first match, as runs of text each marked whether it
-- matched (a word whose folded form holds a folded query word, or the whole folded
-- query): clients render it without parsing markup out of what users wrote.
create function hark_api.search_snippet(p_body text, p_terms text[])
returns jsonb
language sql
immutable
as $$
    with parts as (
        select p.n, p.part[1] as text,
               p.part[1] collate "und-x-icu" ~ '[[:alnum:]]'
                   and exists (select from unnest(p_terms) t
                               where t <> '' and strpos(hark.fold_text(p.part[1]), t) > 0) as hit
        from regexp_matches(p_body collate "und-x-icu", '[[:alnum:]_]+|[^[:alnum:]_]+', 'g')
                 with ordinality as p(part, n)
    ), placed as (
        select parts.*,
               coalesce(sum(char_length(parts.text)) over (order by parts.n rows between unbounded preceding
                                                           and 1 preceding), 0) as start
        from parts
    ), anchor as (
        select coalesce(min(start) filter (where hit), 0) as at from placed
    ), windowed as (
        select placed.*,
               placed.hit is distinct from lag(placed.hit) over (order by placed.n) as turns
        from placed, anchor
        where placed.start + char_length(placed.text) > anchor.at - 60 and placed.start < anchor.at + 140
    ), kept as (
        select windowed.*, count(*) filter (where windowed.turns) over (order by windowed.n) as run
        from windowed
    )
    select coalesce(jsonb_agg(jsonb_build_object('text', runs.text, 'highlight', runs.hit) order by runs.run),
                    '[]'::jsonb)
    from (select kept.run, bool_or(kept.hit) as hit, string_agg(kept.text, '' order by kept.n) as text
          from kept group by kept.run) runs
$$;

-- Searches the messages of every room the caller is in (or of one of them), never a
-- deleted one nor one of a user they blocked: words as prefixes, ranked, and the
-- folded query as a substring (trigram index) for what words miss. The index is read
-- through hark.search_candidates (see migration 0010 for why it is a table of its
-- own), with the rooms read here under row-level security; the newest 1,000 matches
-- are ranked, so that a common word costs a bounded sort; pages of p_limit follow
-- p_cursor (rank and id). The messages themselves are read under row-level security.
create function hark_api.message_search(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_query text, p_room_id uuid, p_sender_id uuid,
    p_after timestamptz, p_before timestamptz, p_has_attachment boolean, p_kind text, p_cursor text,
    p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_query text := btrim(coalesce(p_query, ''), E' \t\r\n');
    v_tsquery tsquery;
    v_folded text;
    v_like text;
    v_terms text[];
    v_rooms uuid[];
    v_blocked uuid[];
    v_rank real;
    v_id uuid;
    v_hits jsonb;
    v_more boolean;
    v_candidate_ids uuid[];
    v_candidate_ranks real[];
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.check_limit(p_limit, 50);
    if char_length(v_query) = 0 then
        perform hark_api.fail(422, 'empty_query', 'The query must have a word', 'q');
    end if;
    if char_length(v_query) > 200 then
        perform hark_api.fail(422, 'query_too_long', 'The query must be at most 200 characters', 'q');
    end if;
    if p_kind is not null and p_kind not in ('text', 'image', 'file', 'system') then
        perform hark_api.fail(422, 'invalid_kind', 'The kind must be text, image, file or system', 'kind');
    end if;
    if p_cursor is not null then
        if p_cursor !~ '^[0-9.e+-]{1,30}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
            perform hark_api.fail(422, 'invalid_cursor', 'The cursor is not one this API gave out', 'cursor');
        end if;
        v_rank := split_part(p_cursor, '_', 1)::real;
        v_id := split_part(p_cursor, '_', 2)::uuid;
    end if;
    if p_room_id is not null then
        perform hark_api.require_readable(p_room_id);
        v_rooms := array[p_room_id];
    else
        v_rooms := array(
            select m.room_id from hark.room_members m
            join hark.rooms r on r.tenant_id = m.tenant_id and r.id = m.room_id
            where m.tenant_id = p_tenant_id and m.user_id = p_user_id);
    end if;
    v_tsquery := hark_api.search_query(v_query);
    v_folded := hark.fold_text(v_query);
    -- A substring shorter than a trigram matches too much to be worth scanning for.
    if char_length(v_folded) >= 3 then
        v_like := '%' || replace(replace(replace(v_folded, '\', '\\'), '%', '\%'), '_', '\_') || '%';
    end if;
    v_terms := array(select lexeme from unnest(to_tsvector('simple', hark.search_text(v_query))))
               || v_folded;
    v_blocked := hark_api.blocked_by(p_user_id);
    -- The candidates first, in a statement of their own: a query over messages that
    -- called the index's function would run it, on Citus, on the tenant's worker, where
    -- its read of the index cannot go on to the other workers' shards.
    select coalesce(array_agg(c.message_id), '{}'), coalesce(array_agg(c.rank), '{}')
    into v_candidate_ids, v_candidate_ranks
    from hark.search_candidates(v_rooms, v_tsquery, v_like, p_sender_id, p_after, p_before,
                                p_has_attachment, p_kind, 1000) c;
    with candidates as (
        select c.message_id, c.rank from unnest(v_candidate_ids, v_candidate_ranks) as c(message_id, rank)
    ), page as (
        select row(m.*)::hark.messages as msg, m.id, candidates.rank
        from candidates
        join hark.messages m on m.tenant_id = p_tenant_id and m.id = candidates.message_id
        where m.deleted_at is null
          and not coalesce(m.sender_id = any (v_blocked), false)
          and (v_id is null or (candidates.rank, m.id) < (v_rank, v_id))
        order by candidates.rank desc, m.id desc
        limit p_limit + 1
    )
    select jsonb_agg(jsonb_build_object(
               'message', hark_api.message_json(hit.msg, p_user_id),
               'room', jsonb_build_object('id', r.id, 'name', r.name, 'kind', r.kind),
               'snippet', hark_api.search_snippet((hit.msg).body, v_terms),
               'rank', hit.rank) order by hit.rank desc, hit.id desc) filter (where hit.n <= p_limit),
           count(*) > p_limit
    into v_hits, v_more
    from (select page.*, row_number() over (order by page.rank desc, page.id desc) as n from page) hit
    join hark.rooms r on r.tenant_id = p_tenant_id and r.id = (hit.msg).room_id;
    return jsonb_build_object(
        'items', coalesce(v_hits, '[]'::jsonb),
        'next_cursor', case when v_more then
            (v_hits -> -1 ->> 'rank') || '_' || (v_hits -> -1 -> 'message' ->> 'id') end);
end
$$;
