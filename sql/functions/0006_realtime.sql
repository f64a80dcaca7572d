-- Real-time delivery: the notifier that wakes instances up, the reads an instance makes
-- for its subscribers, and the ephemeral signals (typing, presence) that travel by
-- NOTIFY without touching tables.

-- The channel of a room: one per room, so that an instance hears only the rooms its
-- sockets subscribe to.
create function hark_api.room_channel(p_room_id uuid)
returns text
language sql
immutable
as $$ select 'hark_room_' || replace(p_room_id::text, '-', '') $$;

-- Tells the instances listening on a room about events just appended to its log:
-- the one notifier (hark_api.append_events calls it, once per room per write). The
-- payload carries the events when it fits well under NOTIFY's 8000-byte limit
-- ({"kind": "events"}), and only the newest seq otherwise ({"kind": "wake"}): either
-- way the log stays the one copy, which instances read for gaps and big events. A
-- write's trace context, when it is traced, rides along, so that the fan-out on every
-- instance joins its trace; nothing of it is stored.
create function hark_api.publish_events(
    p_tenant_id uuid, p_room_id uuid, p_events jsonb, p_last_seq bigint, p_traceparent text)
returns void
language plpgsql
as $$
declare
    v_payload jsonb := jsonb_build_object(
        'kind', 'events', 'tenant_id', p_tenant_id, 'room_id', p_room_id, 'events', p_events,
        'traceparent', p_traceparent);
    v_text text;
begin
    if p_traceparent is null then
        v_payload := v_payload - 'traceparent';
    end if;
    v_text := v_payload::text;
    if octet_length(v_text) > 7000 then
        v_text := jsonb_strip_nulls(jsonb_build_object(
            'kind', 'wake', 'tenant_id', p_tenant_id, 'room_id', p_room_id, 'seq', p_last_seq,
            'traceparent', p_traceparent))::text;
    end if;
    perform pg_notify(hark_api.room_channel(p_room_id), v_text);
end
$$;

-- Sends an ephemeral signal (typing, a moved read marker) to a room's listeners.
-- Nothing is stored; the payload names its kind like publish_events'.
create function hark_api.publish_signal(p_tenant_id uuid, p_room_id uuid, p_kind text, p_fields jsonb)
returns void
language plpgsql
as $$
begin
    perform pg_notify(hark_api.room_channel(p_room_id), (jsonb_build_object(
        'kind', p_kind, 'tenant_id', p_tenant_id, 'room_id', p_room_id) || p_fields)::text);
end
$$;

-- Checks that the caller may subscribe to a room (a member) and answers what the
-- subscription needs: the room's tenant and newest seq, and the caller as others see
-- them (for presence).
create function hark_api.room_subscribe(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    -- A user's own id names their feed (sql/functions/0010_user_feed.sql), which only
    -- they may subscribe to; anyone else's id is a room that does not exist.
    if p_room_id = p_user_id then
        return jsonb_build_object(
            'room_id', p_user_id,
            'tenant_id', p_tenant_id,
            'last_seq', coalesce((select last_seq from hark.user_feeds
                                  where tenant_id = p_tenant_id and user_id = p_user_id), 0),
            'user', hark_api.user_ref(p_user_id));
    end if;
    perform hark_api.require_readable(p_room_id);
    return jsonb_build_object(
        'room_id', p_room_id,
        'tenant_id', p_tenant_id,
        'last_seq', (select last_seq from hark.rooms where tenant_id = p_tenant_id and id = p_room_id),
        'user', hark_api.user_ref(p_user_id));
end
$$;

-- An instance's read of a room's log for subscribers it has already authorised:
-- events after p_after_seq up to p_upto_seq (or the newest), at most p_limit and
-- p_max_bytes of JSON, with the room's newest seq. A deleted room answers last_seq null.
create function hark_api.room_events_after(
    p_tenant_id uuid, p_room_id uuid, p_after_seq bigint, p_upto_seq bigint, p_limit integer,
    p_max_bytes integer)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter(p_tenant_id, null);
    if exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_room_id) then
        return hark_api.feed_page(p_tenant_id, p_room_id, p_after_seq, p_upto_seq, p_limit, p_max_bytes);
    end if;
    return hark_api.log_page(p_tenant_id, p_room_id, p_after_seq, p_upto_seq, p_limit, p_max_bytes);
end
$$;

-- Tells the room's listeners that the caller is typing (members who may write: not
-- while muted, nor in a direct room with a block). Nothing is stored: the signal
-- expires on the clients.
-- A profile too big for the payload (only rows from before profile URLs were bounded
-- by bytes can be) travels as the user's id and username.
create function hark_api.typing(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns void
language plpgsql
as $$
declare
    v_user jsonb;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    perform hark_api.require_may_post(p_room_id, p_user_id, exists (
        select 1 from hark.rooms where tenant_id = p_tenant_id and id = p_room_id and kind = 'direct'));
    v_user := hark_api.user_ref(p_user_id);
    if octet_length(v_user::text) > 3000 then
        v_user := jsonb_build_object('id', v_user -> 'id', 'username', v_user -> 'username');
    end if;
    perform hark_api.publish_signal(p_tenant_id, p_room_id, 'typing', jsonb_build_object('user', v_user));
end
$$;

-- Publishes an instance's presence signal (joins, leaves and heartbeats) to every
-- instance. The payload is built by the server; nothing is stored.
create function hark_api.presence_publish(p_payload text)
returns void
language sql
as $$ select pg_notify('hark_presence', p_payload) $$;

-- Of the given users, those who are members of the room, as shown to the caller (a
-- member): the online members of a room, given who is connected.
create function hark_api.room_members_among(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid, p_user_ids uuid[])
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    return coalesce((
        select jsonb_agg(hark_api.user_ref(m.user_id) order by m.user_id)
        from hark.room_members m
        where m.tenant_id = p_tenant_id and m.room_id = p_room_id and m.user_id = any(p_user_ids)), '[]'::jsonb);
end
$$;

-- How full Postgres's notification queue is (0 to 1), for /metrics: a listener that
-- stops reading lets it fill, and a full queue makes notifying commits fail.
create function hark_api.notification_queue_usage()
returns jsonb
language sql
as $$ select to_jsonb(pg_notification_queue_usage()) $$;
