-- Rooms and their members. Every change to a room appends an event to the room's log
-- with the next gapless seq, in the same transaction, under the room's row lock
-- (hark_api.append_event).

-- The unambiguous alphabet of invite codes: no 0/O, no 1/I.
create function hark_api.new_invite_code()
returns text
language sql
volatile
as $$
    select string_agg(
        substr('23456789ABCDEFGHJKLMNPQRSTUVWXYZ', (get_byte(uuid_send(gen_random_uuid()), 0) % 32) + 1, 1),
        '')
    from generate_series(1, 6)
$$;

-- Gives a room a new invite code, drawing again on the rare collision with another
-- room's code in the tenant.
create function hark_api.draw_invite_code(p_room_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_code text;
begin
    for attempt in 1..10 loop
        begin
            -- Drawn before the update: Citus refuses volatile functions in one.
            v_code := hark_api.new_invite_code();
            update hark.rooms set invite_code = v_code, updated_at = v_now where tenant_id = v_current_tenant and id = p_room_id;
            return;
        exception when unique_violation then
            if attempt = 10 then
                raise;
            end if;
        end;
    end loop;
end
$$;

-- Whether a room of a tenant exists: with a lock that skipped it, whether another
-- transaction holds it.
create function hark_api.room_exists(p_tenant_id uuid, p_room_id uuid)
returns boolean
language plpgsql
stable
as $$
begin
    return (select exists (select 1 from hark.rooms where tenant_id = p_tenant_id and id = p_room_id));
end
$$;

-- Locks a room of the current tenant for a change and returns it, or fails with 404.
-- Without p_wait, a room another transaction holds is not waited for: the call fails
-- with SQLSTATE 55P03 (lock_not_available, message room_busy), so that the message
-- writer can send that room's messages aside instead of holding up other rooms'.
create function hark_api.lock_room(p_room_id uuid, p_wait boolean default true)
returns hark.rooms
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_room hark.rooms;
begin
    if p_wait then
        select * into v_room from hark.rooms
        where tenant_id = v_current_tenant and id = p_room_id
        for update;
    else
        select * into v_room from hark.rooms
        where tenant_id = v_current_tenant and id = p_room_id
        for update skip locked;
        if v_room.id is null and hark_api.room_exists(v_current_tenant, p_room_id) then
            raise exception using errcode = '55P03', message = 'room_busy';
        end if;
    end if;
    if v_room.id is null then
        perform hark_api.fail(404, 'room_not_found', 'No such room');
    end if;
    return v_room;
end
$$;

-- The current user's role in a room, or null when they are not a member.
create function hark_api.member_role(p_room_id uuid)
returns text
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select role from hark.room_members
            where tenant_id = v_current_tenant and room_id = p_room_id
              and user_id = hark_api.current_user_id());
end
$$;

-- Fails with 403 not_a_member unless the role is a member's (not null); returns it.
create function hark_api.require_role(p_role text)
returns text
language plpgsql
as $$
begin
    if p_role is null then
        perform hark_api.fail(403, 'not_a_member', 'Only members of the room may do this');
    end if;
    return p_role;
end
$$;

-- Fails with 403 not_a_member unless the current user is a member; returns their role.
create function hark_api.require_member(p_room_id uuid)
returns text
language plpgsql
as $$
begin
    return hark_api.require_role(hark_api.member_role(p_room_id));
end
$$;

-- Fails with 403 unless the current user is an owner or admin of the room.
create function hark_api.require_room_admin(p_room_id uuid)
returns text
language plpgsql
as $$
declare
    v_role text := hark_api.require_member(p_room_id);
begin
    if v_role not in ('owner', 'admin') then
        perform hark_api.fail(403, 'forbidden', 'Only owners and admins of the room may do this');
    end if;
    return v_role;
end
$$;

create function hark_api.require_group(p_room hark.rooms)
returns void
language plpgsql
as $$
begin
    if p_room.kind = 'direct' then
        perform hark_api.fail(409, 'direct_room', 'Direct rooms have exactly their two members and no settings');
    end if;
end
$$;

create function hark_api.require_open(p_archived boolean)
returns void
language plpgsql
as $$
begin
    if p_archived then
        perform hark_api.fail(409, 'room_archived', 'The room is archived: its history stays readable, nothing new is accepted');
    end if;
end
$$;

create function hark_api.require_not_archived(p_room hark.rooms)
returns void
language plpgsql
as $$
begin
    perform hark_api.require_open(p_room.archived_at is not null);
end
$$;

-- Appends events to a room's log with the next seqs, and tells the room's listeners:
-- the one way every writer (sends, batches, edits, deletes, reactions, membership and
-- room changes) records and announces a change, to subscribers and to webhooks. p_events is an array of
-- {type, data, actor_id?} (the actor defaults to the current user). The caller holds
-- the room's row lock (the update below would take it anyway), so seqs are gapless and
-- in commit order per room. Answers the new last seq.
create function hark_api.append_events(p_room_id uuid, p_events jsonb, p_traceparent text)
returns bigint
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_count integer := jsonb_array_length(p_events);
    v_tenant_id uuid := v_current_tenant;
    v_last bigint;
    v_written jsonb;
    v_senders uuid[];
    v_first_message bigint;
begin
    update hark.rooms
    set last_seq = last_seq + v_count, last_event_at = v_now
    where tenant_id = v_tenant_id and id = p_room_id
    returning last_seq into v_last;
    with written as (
        insert into hark.room_events (tenant_id, room_id, seq, type, actor_id, data)
        select v_tenant_id, p_room_id, v_last - v_count + e.position, e.event ->> 'type',
               coalesce((e.event ->> 'actor_id')::uuid, hark_api.current_user_id()), e.event -> 'data'
        from jsonb_array_elements(p_events) with ordinality as e(event, position)
        returning *)
    select jsonb_agg(hark_api.event_json(row(written.*)::hark.room_events) order by written.seq),
           array_agg(distinct written.actor_id) filter (where written.type = 'message.created'),
           min(written.seq) filter (where written.type = 'message.created')
    into v_written, v_senders, v_first_message
    from written;
    perform hark_api.publish_events(v_tenant_id, p_room_id, v_written, v_last, p_traceparent);
    perform hark_api.webhook_enqueue_room_events(v_tenant_id, p_room_id, v_written);
    if v_first_message is not null then
        perform hark_api.feed_unread(v_tenant_id, p_room_id, v_senders, v_first_message);
    end if;
    return v_last;
end
$$;

-- Appends one event by the current user (see append_events).
create function hark_api.append_event(p_room_id uuid, p_type text, p_data jsonb)
returns bigint
language plpgsql
as $$
begin
    return hark_api.append_events(p_room_id, jsonb_build_array(jsonb_build_object('type', p_type, 'data', p_data)), null);
end
$$;

-- A user as shown inside rooms, messages and events. PL/pgSQL so that its plan is
-- cached: it runs for every message and event.
create function hark_api.user_ref(p_user_id uuid)
returns jsonb
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (
        select jsonb_build_object(
            'id', u.id,
            'username', u.username,
            'display_name', u.display_name,
            'avatar_url', u.avatar_url)
        from hark.users u
        where u.tenant_id = v_current_tenant and u.id = p_user_id);
end
$$;

-- The shape of a room for the current user.
create function hark_api.room_json(p_room hark.rooms)
returns jsonb
language plpgsql
stable
as $$
declare
    v_member hark.room_members;
    v_member_count bigint;
    v_other uuid;
begin
    -- Simple reads, one table each, by the tenant's key: Citus routes each to one
    -- shard (a join of these under one select crashed its planner).
    select * into v_member from hark.room_members m
    where m.tenant_id = p_room.tenant_id and m.room_id = p_room.id and m.user_id = hark_api.current_user_id();
    v_member_count := (select count(*) from hark.room_members c
                       where c.tenant_id = p_room.tenant_id and c.room_id = p_room.id);
    if p_room.kind = 'direct' then
        v_other := (select o.user_id from hark.room_members o
                    where o.tenant_id = p_room.tenant_id and o.room_id = p_room.id
                      and o.user_id <> hark_api.current_user_id()
                    limit 1);
    end if;
    return jsonb_build_object(
        'id', p_room.id,
        'kind', p_room.kind,
        'name', p_room.name,
        'topic', p_room.topic,
        'visibility', p_room.visibility,
        'invite_code', case when v_member.role is not null then p_room.invite_code end,
        'archived', p_room.archived_at is not null,
        'archived_at', p_room.archived_at,
        'created_by', p_room.created_by,
        'created_at', p_room.created_at,
        'updated_at', p_room.updated_at,
        'last_seq', p_room.last_seq,
        'last_activity_at', p_room.last_event_at,
        'slow_mode_seconds', p_room.slow_mode_seconds,
        'members_can_pin', p_room.members_can_pin,
        'members_can_mention_room', p_room.members_can_mention_room,
        'metadata', p_room.metadata,
        'retention_days', p_room.retention_days,
        'member_count', v_member_count,
        'my_role', v_member.role,
        'last_read_seq', v_member.last_read_seq,
        'direct_user', case when v_other is not null then hark_api.user_ref(v_other) end);
end
$$;

create function hark_api.member_json(p_member hark.room_members)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'room_id', p_member.room_id,
        'user', hark_api.user_ref(p_member.user_id),
        'role', p_member.role,
        'joined_at', p_member.joined_at,
        'last_read_seq', p_member.last_read_seq)
$$;

-- Adds a member and appends member.joined; answers the membership. A user banned
-- from the room is refused here, whichever way they come (by id, code or an admin),
-- and a user muted there comes back muted.
create function hark_api.add_member(p_room_id uuid, p_user_id uuid, p_role text)
returns jsonb
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_member hark.room_members;
    v_last_seq bigint;
    v_muted_until timestamptz;
begin
    perform hark_api.require_not_banned(p_room_id, p_user_id);
    perform hark_api.require_member_quota(p_room_id);
    -- Values are read first: Citus takes no subqueries in an INSERT's VALUES.
    v_last_seq := (select last_seq from hark.rooms where tenant_id = v_current_tenant and id = p_room_id);
    v_muted_until := hark_api.mute_until(p_room_id, p_user_id);
    insert into hark.room_members (tenant_id, room_id, user_id, role, last_read_seq, muted_until)
    values (v_current_tenant, p_room_id, p_user_id, p_role, v_last_seq, v_muted_until)
    returning * into v_member;
    perform hark_api.append_event(p_room_id, 'member.joined', hark_api.member_json(v_member));
    perform hark_api.feed_append(array[p_user_id], 'feed.room_added',
        hark_api.feed_room(p_room_id) || jsonb_build_object('role', p_role));
    return hark_api.member_json(v_member);
end
$$;

create function hark_api.validate_room_fields(p_name text, p_topic text, p_visibility text)
returns void
language plpgsql
as $$
begin
    if p_name is null or char_length(btrim(p_name)) = 0 or char_length(p_name) > 100 then
        perform hark_api.fail(422, 'invalid_name', 'The room name must be 1 to 100 characters', 'name');
    end if;
    if p_topic is not null and char_length(p_topic) > 1000 then
        perform hark_api.fail(422, 'invalid_topic', 'The topic must be at most 1000 characters', 'topic');
    end if;
    if p_visibility not in ('public', 'private') then
        perform hark_api.fail(422, 'invalid_visibility', 'The visibility must be public or private', 'visibility');
    end if;
end
$$;

-- Creates a group room with the caller as its owner and, optionally, other users of
-- the tenant as members (at most 100, each joining with its own member.joined).
create function hark_api.room_create(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid,
    p_room_id uuid, p_name text, p_topic text, p_visibility text, p_member_ids uuid[])
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_member_id uuid;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.validate_room_fields(p_name, p_topic, p_visibility);
    if cardinality(p_member_ids) > 100 then
        perform hark_api.fail(422, 'too_many_members', 'A room is created with at most 100 other members', 'member_ids');
    end if;
    perform hark_api.require_quota(p_tenant_id, 'rooms', 1);
    insert into hark.rooms (tenant_id, id, kind, name, topic, visibility, created_by)
    values (p_tenant_id, p_room_id, 'group', p_name, p_topic, p_visibility, p_user_id);
    perform hark_api.draw_invite_code(p_room_id);
    perform hark_api.add_member(p_room_id, p_user_id, 'owner');
    for v_member_id in
        select distinct m from unnest(coalesce(p_member_ids, '{}')) m where m <> p_user_id order by m
    loop
        if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = v_member_id and deleted_at is null) then
            perform hark_api.fail(404, 'user_not_found', 'No user has the id ' || v_member_id, 'member_ids');
        end if;
        perform hark_api.add_member(p_room_id, v_member_id, 'member');
    end loop;
    select * into v_room from hark.rooms where tenant_id = p_tenant_id and id = p_room_id;
    return hark_api.room_json(v_room);
end
$$;

-- The direct room between the caller and another user, created on first use. Both
-- sides calling at once get the same room: the sorted pair is a unique key.
create function hark_api.room_direct(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_other_user_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_key text;
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if p_other_user_id = p_user_id then
        perform hark_api.fail(422, 'invalid_user', 'A direct room needs another user', 'user_id');
    end if;
    if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_other_user_id and deleted_at is null) then
        perform hark_api.fail(404, 'user_not_found', 'No such user', 'user_id');
    end if;
    if hark_api.blocked_between(p_user_id, p_other_user_id) then
        perform hark_api.fail(403, 'blocked', 'You cannot write to this user');
    end if;
    v_key := least(p_user_id::text, p_other_user_id::text) || ':' || greatest(p_user_id::text, p_other_user_id::text);
    -- Only a room about to be created counts against the quota.
    if not exists (select 1 from hark.rooms where tenant_id = p_tenant_id and direct_key = v_key) then
        perform hark_api.require_quota(p_tenant_id, 'rooms', 1);
    end if;
    insert into hark.rooms (tenant_id, id, kind, visibility, direct_key, created_by)
    values (p_tenant_id, p_room_id, 'direct', 'private', v_key, p_user_id)
    on conflict (tenant_id, direct_key) where direct_key is not null do nothing
    returning * into v_room;
    if v_room.id is not null then
        perform hark_api.add_member(v_room.id, least(p_user_id, p_other_user_id), 'member');
        perform hark_api.add_member(v_room.id, greatest(p_user_id, p_other_user_id), 'member');
    end if;
    select * into v_room from hark.rooms where tenant_id = p_tenant_id and direct_key = v_key;
    return hark_api.room_json(v_room);
end
$$;

-- A room's newest message in its main timeline (not deleted, not a reply kept in its
-- thread), as the viewer sees it; null for a room without one. A function of its own
-- rather than a subquery of the room list: Citus takes no correlated subquery there.
create function hark_api.room_last_message(p_tenant_id uuid, p_room_id uuid, p_user_id uuid)
returns jsonb
language plpgsql
stable
as $$
begin
    return (select hark_api.message_json(row(msg.*)::hark.messages, p_user_id) from hark.messages msg
            where msg.tenant_id = p_tenant_id and msg.room_id = p_room_id and msg.deleted_at is null
              and (msg.parent_id is null or msg.show_in_room)
            order by msg.seq desc limit 1);
end
$$;

-- The caller's rooms with unread counts and their newest message of the main
-- timeline: by last activity, newest first (the default), or by name; only those of a
-- kind, a visibility, archived or not, with a metadata key and value (p_metadata, as
-- jsonb containment), or with unread messages. p_limit per page after p_cursor (a
-- time cursor by activity, the last room's id by name).
create function hark_api.room_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_cursor text, p_limit integer,
    p_kind text, p_visibility text, p_archived boolean, p_metadata jsonb, p_has_unread boolean, p_sort text)
returns jsonb
language plpgsql
as $$
declare
    v_before_activity timestamptz;
    v_before_id uuid;
    v_after_name text;
    v_after_id uuid;
    v_page jsonb;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.check_limit(p_limit, 200);
    if p_kind is not null and p_kind not in ('group', 'direct') then
        perform hark_api.fail(422, 'invalid_kind', 'The kind must be group or direct', 'kind');
    end if;
    if p_visibility is not null and p_visibility not in ('public', 'private') then
        perform hark_api.fail(422, 'invalid_visibility', 'The visibility must be public or private', 'visibility');
    end if;
    if coalesce(p_sort, 'activity') not in ('activity', 'name') then
        perform hark_api.fail(422, 'invalid_sort', 'Sort by activity or name', 'sort');
    end if;
    if p_sort = 'name' then
        if p_cursor is not null then
            if p_cursor !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
                perform hark_api.fail(422, 'invalid_cursor', 'The cursor is not one this API gave out', 'cursor');
            end if;
            select lower(coalesce(name, '')), id into v_after_name, v_after_id
            from hark.rooms where tenant_id = p_tenant_id and id = p_cursor::uuid;
        end if;
    else
        select at, id into v_before_activity, v_before_id
        from hark_api.parse_time_cursor(p_cursor) as c(at timestamptz, id uuid);
    end if;
    with mine as (
        select row(r.*)::hark.rooms as room, m.last_read_seq, r.last_event_at as activity, r.id, lower(coalesce(r.name, '')) as sort_name
        from hark.room_members m
        join hark.rooms r on r.tenant_id = m.tenant_id and r.id = m.room_id
        where m.tenant_id = p_tenant_id and m.user_id = p_user_id
          and (p_kind is null or r.kind = p_kind)
          and (p_visibility is null or r.visibility = p_visibility)
          and (p_archived is null or (r.archived_at is not null) = p_archived)
          and (p_metadata is null or r.metadata @> p_metadata)
          and (p_has_unread is null or (hark_api.unread_count(r.id, m.last_read_seq) > 0) = p_has_unread)
    ), page as (
        select * from mine
        where (p_sort is distinct from 'name'
               and (v_before_activity is null or (mine.activity, mine.id) < (v_before_activity, v_before_id)))
           or (p_sort = 'name' and (v_after_id is null or (mine.sort_name, mine.id) > (v_after_name, v_after_id)))
        order by case when p_sort = 'name' then null else mine.activity end desc,
                 case when p_sort = 'name' then mine.sort_name end,
                 case when p_sort = 'name' then mine.id end,
                 mine.id desc
        limit p_limit
    ), numbered as (
        select page.*, row_number() over (
                   order by case when p_sort = 'name' then null else page.activity end desc,
                            case when p_sort = 'name' then page.sort_name end,
                            case when p_sort = 'name' then page.id end,
                            page.id desc) as n
        from page
    )
    select jsonb_build_object(
               'items', coalesce(jsonb_agg(
                   hark_api.room_json(numbered.room)
                   || jsonb_build_object(
                       'unread_count', hark_api.unread_count(numbered.id, numbered.last_read_seq),
                       'last_message', hark_api.room_last_message(p_tenant_id, numbered.id, p_user_id))
                   order by numbered.n), '[]'::jsonb),
               'next_cursor', case when count(*) = p_limit then (
                   select case when p_sort = 'name' then last.id::text
                               else hark_api.time_cursor(last.activity, last.id) end
                   from numbered last order by last.n desc limit 1) end)
    into v_page
    from numbered;
    return v_page;
end
$$;

-- The tenant's public rooms, for any of its users to find one to join: by a part of
-- the name (p_query, case-insensitive), not archived, and not those the caller is
-- banned from; each says the caller's role where they are a member. In order of
-- creation, p_limit after the room p_after.
create function hark_api.room_public_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_query text, p_after uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_count integer;
    v_last uuid;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.check_limit(p_limit, 200);
    if p_query is not null and char_length(p_query) > 100 then
        perform hark_api.fail(422, 'invalid_query', 'The query must be at most 100 characters', 'q');
    end if;
    select coalesce(jsonb_agg(hark_api.room_json(row(page.*)::hark.rooms) order by page.id), '[]'::jsonb),
           count(*),
           max(page.id::text)::uuid
    into v_items, v_count, v_last
    from (
        select r.* from hark.rooms r
        where r.tenant_id = p_tenant_id and r.visibility = 'public' and r.archived_at is null
          and (p_after is null or r.id > p_after)
          and (p_query is null or strpos(lower(coalesce(r.name, '')), lower(p_query)) > 0)
          and not hark_api.is_banned(r.id, p_user_id)
        order by r.id
        limit p_limit
    ) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

-- A room: members see everything; others see public rooms only (to join them).
create function hark_api.room_get(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    select * into v_room from hark.rooms where tenant_id = p_tenant_id and id = p_room_id;
    if v_room.id is null then
        perform hark_api.fail(404, 'room_not_found', 'No such room');
    end if;
    if v_room.visibility <> 'public' then
        perform hark_api.require_member(p_room_id);
    end if;
    return hark_api.room_json(v_room);
end
$$;

-- Applies name, topic, visibility, slow mode, who may pin and mention everyone,
-- metadata and retention from p_patch (room owners and admins).
create function hark_api.room_update(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_patch jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_room hark.rooms;
    v_changes jsonb := '{}';
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_room_admin(p_room_id);
    perform hark_api.require_group(v_room);
    perform hark_api.require_not_archived(v_room);
    if p_patch ? 'name' and jsonb_typeof(p_patch -> 'name') <> 'string' then
        perform hark_api.fail(422, 'invalid_name', 'The room name must be 1 to 100 characters', 'name');
    end if;
    if p_patch ? 'topic' and jsonb_typeof(p_patch -> 'topic') not in ('string', 'null') then
        perform hark_api.fail(422, 'invalid_topic', 'The topic must be a string or null', 'topic');
    end if;
    if p_patch ? 'slow_mode_seconds' and (jsonb_typeof(p_patch -> 'slow_mode_seconds') <> 'number'
       or (p_patch ->> 'slow_mode_seconds')::numeric not between 0 and 21600
       or (p_patch ->> 'slow_mode_seconds')::numeric <> trunc((p_patch ->> 'slow_mode_seconds')::numeric)) then
        perform hark_api.fail(422, 'invalid_slow_mode_seconds', 'slow_mode_seconds must be a whole number from 0 to 21600', 'slow_mode_seconds');
    end if;
    if p_patch ? 'members_can_pin' and jsonb_typeof(p_patch -> 'members_can_pin') <> 'boolean' then
        perform hark_api.fail(422, 'invalid_members_can_pin', 'members_can_pin must be true or false', 'members_can_pin');
    end if;
    if p_patch ? 'members_can_mention_room' and jsonb_typeof(p_patch -> 'members_can_mention_room') <> 'boolean' then
        perform hark_api.fail(422, 'invalid_members_can_mention_room', 'members_can_mention_room must be true or false',
                              'members_can_mention_room');
    end if;
    if p_patch ? 'metadata' and jsonb_typeof(p_patch -> 'metadata') <> 'object' then
        perform hark_api.fail(422, 'invalid_metadata', 'metadata must be a JSON object', 'metadata');
    end if;
    if p_patch ? 'retention_days' then
        perform hark_api.validate_retention_days(p_patch -> 'retention_days');
        if (p_patch ->> 'retention_days')::integer > 0 then
            update hark.tenants set room_retention = true where id = p_tenant_id and not room_retention;
        end if;
    end if;
    perform hark_api.validate_room_fields(
        coalesce(p_patch ->> 'name', v_room.name),
        case when p_patch ? 'topic' then p_patch ->> 'topic' else v_room.topic end,
        coalesce(p_patch ->> 'visibility', v_room.visibility));
    update hark.rooms r
    set name = coalesce(p_patch ->> 'name', r.name),
        topic = case when p_patch ? 'topic' then p_patch ->> 'topic' else r.topic end,
        visibility = coalesce(p_patch ->> 'visibility', r.visibility),
        slow_mode_seconds = coalesce((p_patch ->> 'slow_mode_seconds')::integer, r.slow_mode_seconds),
        members_can_pin = coalesce((p_patch ->> 'members_can_pin')::boolean, r.members_can_pin),
        members_can_mention_room = coalesce((p_patch ->> 'members_can_mention_room')::boolean,
                                            r.members_can_mention_room),
        metadata = coalesce(p_patch -> 'metadata', r.metadata),
        retention_days = case when p_patch ? 'retention_days'
                              then nullif((p_patch ->> 'retention_days')::integer, 0)
                              else r.retention_days end,
        updated_at = v_now
    where r.tenant_id = p_tenant_id and r.id = p_room_id
    returning * into v_room;
    perform hark_api.append_event(p_room_id, 'room.updated', jsonb_build_object(
        'name', v_room.name, 'topic', v_room.topic, 'visibility', v_room.visibility,
        'slow_mode_seconds', v_room.slow_mode_seconds, 'members_can_pin', v_room.members_can_pin,
        'members_can_mention_room', v_room.members_can_mention_room, 'metadata', v_room.metadata,
        'retention_days', v_room.retention_days, 'changed', (
            select coalesce(jsonb_agg(key order by key), '[]'::jsonb)
            from jsonb_object_keys(p_patch) key
            where key in ('name', 'topic', 'visibility', 'slow_mode_seconds', 'members_can_pin',
                          'members_can_mention_room', 'metadata', 'retention_days'))));
    select * into v_room from hark.rooms where tenant_id = p_tenant_id and id = p_room_id;
    return hark_api.room_json(v_room);
end
$$;

-- Archives a room (owners and admins): history stays readable, nothing new is accepted.
create function hark_api.room_archive(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_room hark.rooms;
    v_members uuid[];
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_room_admin(p_room_id);
    perform hark_api.require_group(v_room);
    if v_room.archived_at is null then
        update hark.rooms set archived_at = v_now, updated_at = v_now where tenant_id = p_tenant_id and id = p_room_id;
        perform hark_api.append_event(p_room_id, 'room.archived', jsonb_build_object('archived', true));
        v_members := array(select user_id from hark.room_members where tenant_id = p_tenant_id and room_id = p_room_id);
        perform hark_api.feed_append(v_members, 'feed.room_archived', hark_api.feed_room(p_room_id));
    end if;
    select * into v_room from hark.rooms where tenant_id = p_tenant_id and id = p_room_id;
    return hark_api.room_json(v_room);
end
$$;

-- Deletes a room with its history (room owners). The room is gone for everyone at
-- once (marked deleted, out of sight of row-level security), its invite code and
-- direct-room key are free again and its members removed; its messages and events
-- go in bounded batches afterwards (hark_api.purge_rooms).
create function hark_api.room_delete(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_members uuid[];
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    if hark_api.require_member(p_room_id) <> 'owner' then
        perform hark_api.fail(403, 'forbidden', 'Only an owner of the room may delete it');
    end if;
    v_members := array(select user_id from hark.room_members where tenant_id = p_tenant_id and room_id = p_room_id);
    perform hark_api.feed_append(v_members, 'feed.room_removed',
                                 hark_api.feed_room(p_room_id) || jsonb_build_object('reason', 'deleted'));
    delete from hark.room_members where tenant_id = p_tenant_id and room_id = p_room_id;
    -- An updated row must stay visible to whoever updates it: for this one statement,
    -- the purge's view, in which deleted rooms are.
    perform hark_api.set_local('hark.purging', 'on');
    update hark.rooms set deleted_at = v_now, invite_code = null, direct_key = null
    where tenant_id = p_tenant_id and id = p_room_id;
    perform hark_api.set_local('hark.purging', '');
    perform hark_api.webhook_event(p_tenant_id, p_room_id, 'room.deleted', jsonb_build_object(
        'room_id', p_room_id, 'actor_id', p_user_id, 'last_seq', v_room.last_seq));
end
$$;

-- Deletes a bounded batch of a deleted room's rows, in one short transaction: up to
-- p_batch of its messages (newest first, so that no message goes before a reply to
-- it; their reactions and edits with them), else up to p_batch of its events, else
-- the room itself. Answers how many rows went (a JSON number): 0 when no deleted room
-- is left. A room another instance is purging is skipped (and counts as 1: work left).
create function hark_api.purge_rooms(p_batch integer)
returns jsonb
language plpgsql
as $$
declare
    v_candidate record;
    v_room record;
    v_count integer;
    v_busy boolean := false;
begin
    perform hark_api.enter(null, null), hark_api.set_local('hark.purging', 'on');
    select null::uuid as tenant_id, null::uuid as id into v_room;
    -- A room whose events still wait in the webhook outbox keeps its log until they
    -- are fanned out (hark_api.webhook_fanout reads them from it). The oldest few
    -- deleted rooms are found first and then locked one by one by their tenant's key,
    -- the only way Citus locks a row.
    for v_candidate in
        select r.tenant_id, r.id from hark.rooms r
        where r.deleted_at is not null
          and not exists (select 1 from hark.webhook_outbox o
                          where o.tenant_id = r.tenant_id and o.room_id = r.id)
        order by r.deleted_at
        limit 20
    loop
        select r.tenant_id, r.id into v_room from hark.rooms r
        where r.tenant_id = v_candidate.tenant_id and r.id = v_candidate.id and r.deleted_at is not null
        for update of r skip locked;
        exit when v_room.id is not null;
        v_busy := true;
    end loop;
    if v_room.id is null then
        -- A room another instance is purging at this moment is work left (see
        -- hark_api.purge_tenants).
        return to_jsonb(case when v_busy then 1 else 0 end);
    end if;
    perform hark_api.enter(v_room.tenant_id, null);
    delete from hark.messages
    where tenant_id = v_room.tenant_id and room_id = v_room.id and seq in (
        select seq from hark.messages
        where tenant_id = v_room.tenant_id and room_id = v_room.id
        order by seq desc
        limit p_batch);
    get diagnostics v_count = row_count;
    if v_count = 0 then
        delete from hark.room_events
        where tenant_id = v_room.tenant_id and room_id = v_room.id and seq in (
            select seq from hark.room_events
            where tenant_id = v_room.tenant_id and room_id = v_room.id
            order by seq desc
            limit p_batch);
        get diagnostics v_count = row_count;
    end if;
    if v_count = 0 then
        delete from hark.rooms where tenant_id = v_room.tenant_id and id = v_room.id;
        v_count := 1;
    end if;
    return to_jsonb(v_count);
end
$$;

-- Draws a new invite code (room owners and admins); the old one stops working.
create function hark_api.room_rotate_invite(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_room_admin(p_room_id);
    perform hark_api.require_group(v_room);
    perform hark_api.require_not_archived(v_room);
    perform hark_api.draw_invite_code(p_room_id);
    perform hark_api.append_event(p_room_id, 'room.updated', jsonb_build_object(
        'name', v_room.name, 'topic', v_room.topic, 'visibility', v_room.visibility,
        'changed', jsonb_build_array('invite_code')));
    select * into v_room from hark.rooms where tenant_id = p_tenant_id and id = p_room_id;
    return hark_api.room_json(v_room);
end
$$;

-- Joins the caller to a room they may join; joining twice changes nothing.
create function hark_api.join_room(p_room hark.rooms)
returns jsonb
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    if hark_api.member_role(p_room.id) is null then
        perform hark_api.require_group(p_room);
        perform hark_api.require_not_archived(p_room);
        perform hark_api.add_member(p_room.id, hark_api.current_user_id(), 'member');
    end if;
    select * into p_room from hark.rooms where tenant_id = v_current_tenant and id = p_room.id;
    return hark_api.room_json(p_room);
end
$$;

-- Joins a public room by id.
create function hark_api.room_join(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    if v_room.visibility <> 'public' and hark_api.member_role(p_room_id) is null then
        perform hark_api.fail(403, 'not_a_member', 'This room is private: join it with its invite code');
    end if;
    return hark_api.join_room(v_room);
end
$$;

-- Joins a room by its invite code.
create function hark_api.room_join_by_code(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_code text)
returns jsonb
language plpgsql
as $$
declare
    v_room_id uuid;
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    select id into v_room_id from hark.rooms where tenant_id = p_tenant_id and invite_code = upper(btrim(p_code));
    if v_room_id is null then
        perform hark_api.fail(404, 'invite_not_found', 'No room has this invite code', 'code');
    end if;
    v_room := hark_api.lock_room(v_room_id);
    return hark_api.join_room(v_room);
end
$$;

-- Removes a member and appends member.left with why (p_reason: left, removed or
-- banned; null: left when they remove themselves, else removed). The last owner stays.
create function hark_api.remove_member(p_room_id uuid, p_user_id uuid, p_reason text)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_member hark.room_members;
begin
    select * into v_member from hark.room_members where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id;
    if v_member.user_id is null then
        perform hark_api.fail(404, 'member_not_found', 'This user is not a member of the room');
    end if;
    if v_member.role = 'owner'
       and not exists (select 1 from hark.room_members where tenant_id = v_current_tenant and room_id = p_room_id and role = 'owner' and user_id <> p_user_id) then
        perform hark_api.fail(409, 'last_owner', 'The room must keep an owner: hand ownership over first');
    end if;
    p_reason := coalesce(p_reason, case when p_user_id = hark_api.current_user_id() then 'left' else 'removed' end);
    delete from hark.room_members where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id;
    perform hark_api.append_event(p_room_id, 'member.left', jsonb_build_object(
        'user', hark_api.user_ref(p_user_id),
        'reason', p_reason,
        'removed_by', case when p_reason <> 'left' then hark_api.current_user_id() end));
    perform hark_api.feed_append(array[p_user_id], 'feed.room_removed',
        hark_api.feed_room(p_room_id) || jsonb_build_object('reason', p_reason));
    if p_reason <> 'left' then
        perform hark_api.audit('member.remove', 'user', p_user_id, p_room_id, null, jsonb_build_object('reason', p_reason));
    end if;
end
$$;

create function hark_api.room_leave(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns void
language plpgsql
as $$
declare
    v_room hark.rooms;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_member(p_room_id);
    perform hark_api.require_group(v_room);
    perform hark_api.remove_member(p_room_id, p_user_id, 'left');
end
$$;

-- One page of a room's members in user id order (members only).
create function hark_api.member_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_after uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_count integer;
    v_last uuid;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if not exists (select 1 from hark.rooms where tenant_id = p_tenant_id and id = p_room_id) then
        perform hark_api.fail(404, 'room_not_found', 'No such room');
    end if;
    perform hark_api.require_member(p_room_id);
    perform hark_api.check_limit(p_limit, 200);
    select coalesce(jsonb_agg(hark_api.member_json(row(page.*)::hark.room_members) order by page.user_id), '[]'::jsonb),
           count(*), max(page.user_id::text)::uuid
    into v_items, v_count, v_last
    from (
        select * from hark.room_members
        where tenant_id = p_tenant_id and room_id = p_room_id and (p_after is null or user_id > p_after)
        order by user_id
        limit p_limit
    ) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

-- Adds a user of the tenant to a room (room owners and admins); adding a member
-- again changes nothing.
create function hark_api.member_add(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_member_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_existing hark.room_members;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_room_admin(p_room_id);
    perform hark_api.require_group(v_room);
    perform hark_api.require_not_archived(v_room);
    if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_member_id and deleted_at is null) then
        perform hark_api.fail(404, 'user_not_found', 'No such user', 'user_id');
    end if;
    select * into v_existing from hark.room_members where tenant_id = p_tenant_id and room_id = p_room_id and user_id = p_member_id;
    if v_existing.user_id is not null then
        return hark_api.member_json(v_existing);
    end if;
    return hark_api.add_member(p_room_id, p_member_id, 'member');
end
$$;

-- Removes a member (room owners and admins; only owners remove owners). Removing
-- oneself is leaving.
create function hark_api.member_remove(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_member_id uuid)
returns void
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_caller_role text;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_group(v_room);
    if p_member_id = p_user_id then
        perform hark_api.require_member(p_room_id);
    else
        v_caller_role := hark_api.require_room_admin(p_room_id);
        if hark_api.member_role_of(p_room_id, p_member_id) in ('owner', 'admin') and v_caller_role <> 'owner' then
            perform hark_api.fail(403, 'forbidden', 'Only an owner may remove owners and admins');
        end if;
    end if;
    perform hark_api.remove_member(p_room_id, p_member_id, null);
end
$$;

create function hark_api.member_role_of(p_room_id uuid, p_user_id uuid)
returns text
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select role from hark.room_members where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id);
end
$$;

-- Changes a member's role (room owners only); the room always keeps an owner.
create function hark_api.member_set_role(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_member_id uuid, p_role text)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
    v_member hark.room_members;
    v_old_role text;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    v_room := hark_api.lock_room(p_room_id);
    if hark_api.require_member(p_room_id) <> 'owner' then
        perform hark_api.fail(403, 'forbidden', 'Only an owner of the room may change roles');
    end if;
    perform hark_api.require_group(v_room);
    if p_role is null or p_role not in ('owner', 'admin', 'member') then
        perform hark_api.fail(422, 'invalid_role', 'The role must be owner, admin or member', 'role');
    end if;
    v_old_role := hark_api.member_role_of(p_room_id, p_member_id);
    if v_old_role is null then
        perform hark_api.fail(404, 'member_not_found', 'This user is not a member of the room');
    end if;
    if v_old_role = 'owner' and p_role <> 'owner'
       and not exists (select 1 from hark.room_members where tenant_id = p_tenant_id and room_id = p_room_id and role = 'owner' and user_id <> p_member_id) then
        perform hark_api.fail(409, 'last_owner', 'The room must keep an owner', 'role');
    end if;
    update hark.room_members set role = p_role
    where tenant_id = p_tenant_id and room_id = p_room_id and user_id = p_member_id
    returning * into v_member;
    if v_old_role <> p_role then
        perform hark_api.append_event(p_room_id, 'member.role_changed', hark_api.member_json(v_member)
            || jsonb_build_object('previous_role', v_old_role));
        perform hark_api.audit('member.role_change', 'user', p_member_id, p_room_id, null,
            jsonb_build_object('role', p_role, 'previous_role', v_old_role));
    end if;
    return hark_api.member_json(v_member);
end
$$;

-- May this user read this room? Asked by a member of the room or a tenant admin.
create function hark_api.room_access(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_subject_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_tenant_role text;
    v_subject_role text;
begin
    v_tenant_role := hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if not exists (select 1 from hark.rooms where tenant_id = p_tenant_id and id = p_room_id) then
        perform hark_api.fail(404, 'room_not_found', 'No such room');
    end if;
    if v_tenant_role not in ('owner', 'admin') then
        perform hark_api.require_member(p_room_id);
    end if;
    if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_subject_id and deleted_at is null) then
        perform hark_api.fail(404, 'user_not_found', 'No such user', 'user_id');
    end if;
    v_subject_role := hark_api.member_role_of(p_room_id, p_subject_id);
    return jsonb_build_object(
        'room_id', p_room_id,
        'user_id', p_subject_id,
        'can_read', v_subject_role is not null,
        'can_send', v_subject_role is not null and (select archived_at is null from hark.rooms where tenant_id = p_tenant_id and id = p_room_id),
        'role', v_subject_role);
end
$$;
