-- Real-time delivery: the trigger that wakes instances up, the reads an instance makes
-- for its subscribers, and the ephemeral signals (typing, presence) that travel by
-- NOTIFY without touching tables.

-- The channel of a room: one per room, so that an instance hears only the rooms its
-- sockets subscribe to.
create function hark_api.room_channel(p_room_id uuid)
returns text
language sql
immutable
as $$ select 'hark_room_' || replace(p_room_id::text, '-', '') $$;

-- Wakes the instances listening on the room. The payload carries the event when it
-- fits well under NOTIFY's 8000-byte limit, and only its seq otherwise; either way
-- the log stays the one copy (instances read it for gaps and big events).
create function hark_api.notify_room_event()
returns trigger
language plpgsql
as $$
declare
    v_payload text;
    v_traceparent text := nullif(current_setting('hark.traceparent', true), '');
begin
    -- A batch (hark_api.message_send_batch) sends one notification per room itself.
    if current_setting('hark.batch_notify', true) = 'deferred' then
        return null;
    end if;
    v_payload := jsonb_build_object('tenant_id', new.tenant_id, 'event', hark_api.event_json(new))::text;
    if octet_length(v_payload) > 7000 then
        v_payload := jsonb_build_object('tenant_id', new.tenant_id, 'room_id', new.room_id, 'seq', new.seq)::text;
    end if;
    -- A send's trace context (set by hark_api.message_send when the sender is traced)
    -- travels with its event, so that the fan-out on every instance joins its trace.
    if v_traceparent is not null then
        v_payload := (v_payload::jsonb || jsonb_build_object('traceparent', v_traceparent))::text;
    end if;
    perform pg_notify(hark_api.room_channel(new.room_id), v_payload);
    return null;
end
$$;

create trigger room_events_notify
    after insert on hark.room_events
    for each row execute function hark_api.notify_room_event();

-- Checks that the caller may subscribe to a room (a member) and answers what the
-- subscription needs: the room's tenant and newest seq, and the caller as others see
-- them (for presence).
create function hark_api.room_subscribe(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_room_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.require_readable(p_room_id);
    return jsonb_build_object(
        'room_id', p_room_id,
        'tenant_id', p_tenant_id,
        'last_seq', (select last_seq from hark.rooms where id = p_room_id),
        'user', hark_api.user_ref(p_user_id));
end
$$;

-- An instance's read of a room's log for subscribers it has already authorised:
-- events after p_after_seq up to p_upto_seq (or the newest), at most p_limit, with
-- the room's newest seq. A deleted room answers last_seq null.
create function hark_api.room_events_after(
    p_tenant_id uuid, p_room_id uuid, p_after_seq bigint, p_upto_seq bigint, p_limit integer)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter(p_tenant_id, null);
    return jsonb_build_object(
        'last_seq', (select last_seq from hark.rooms where id = p_room_id),
        'items', coalesce((
            select jsonb_agg(hark_api.event_json(page) order by page.seq)
            from (
                select * from hark.room_events
                where room_id = p_room_id
                  and seq > p_after_seq
                  and (p_upto_seq is null or seq <= p_upto_seq)
                order by seq
                limit p_limit
            ) page), '[]'::jsonb));
end
$$;

-- Tells the room's listeners that the caller is typing (members only). Nothing is
-- stored: the signal expires on the clients.
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
    v_user := hark_api.user_ref(p_user_id);
    if octet_length(v_user::text) > 3000 then
        v_user := jsonb_build_object('id', v_user -> 'id', 'username', v_user -> 'username');
    end if;
    perform pg_notify(hark_api.room_channel(p_room_id), jsonb_build_object(
        'tenant_id', p_tenant_id,
        'typing', jsonb_build_object('room_id', p_room_id, 'user', v_user))::text);
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
        where m.room_id = p_room_id and m.user_id = any(p_user_ids)), '[]'::jsonb);
end
$$;

-- How full Postgres's notification queue is (0 to 1), for /metrics: a listener that
-- stops reading lets it fill, and a full queue makes notifying commits fail.
create function hark_api.notification_queue_usage()
returns double precision
language sql
as $$ select pg_notification_queue_usage() $$;
