-- Each user's event feed (migration 0007): what happens to the user across rooms, with
-- a gapless per-user seq. The real-time core serves a feed as it serves a room, keyed
-- by the user's id: hark_api.publish_events wakes the channel named after that id,
-- hark_api.room_subscribe grants it to its user alone, and hark_api.room_events_after
-- reads it; so subscribing, resuming with since, catching up and SSE are the rooms' own.

-- A feed event as frames and pages show it: the feed's id (its user's) as room_id.
create function hark_api.feed_event_json(p_event hark.user_events)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'room_id', p_event.user_id,
        'seq', p_event.seq,
        'type', p_event.type,
        'actor_id', p_event.actor_id,
        'at', p_event.created_at,
        'data', p_event.data)
$$;

-- Appends one event to the feed of each of p_user_ids (of the current tenant), by the
-- current user, each with the next seq of its feed, and wakes each feed's listeners.
-- Feed rows are locked in user-id order, so that concurrent appends cannot deadlock.
create function hark_api.feed_append(p_user_ids uuid[], p_type text, p_data jsonb)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_tenant_id uuid := v_current_tenant;
    v_event record;
begin
    if coalesce(cardinality(p_user_ids), 0) = 0 then
        return;
    end if;
    for v_event in
        with bumped as (
            insert into hark.user_feeds as f (tenant_id, user_id, last_seq)
            select v_tenant_id, u.id, 1 from (select distinct unnest(p_user_ids) as id) u order by u.id
            on conflict (tenant_id, user_id) do update set last_seq = f.last_seq + 1
            returning f.user_id, f.last_seq),
        written as (
            insert into hark.user_events (tenant_id, user_id, seq, type, actor_id, data)
            select v_tenant_id, b.user_id, b.last_seq, p_type, hark_api.current_user_id(), p_data
            from bumped b
            returning *)
        select w.user_id, w.seq, hark_api.feed_event_json(row(w.*)::hark.user_events) as json from written w
    loop
        perform hark_api.publish_events(v_tenant_id, v_event.user_id, jsonb_build_array(v_event.json),
                                        v_event.seq, null);
    end loop;
end
$$;

-- A room as a feed event names it: enough to list it before fetching it.
create function hark_api.feed_room(p_room_id uuid)
returns jsonb
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select jsonb_build_object(
            'room_id', r.id, 'kind', r.kind, 'name', r.name, 'visibility', r.visibility)
        from hark.rooms r where r.tenant_id = v_current_tenant and r.id = p_room_id);
end
$$;

-- feed.unread: the members of a room for whom messages of others just arrived while
-- none were waiting (room_members.has_unread was false; their unread count left zero).
-- Called by hark_api.append_events when it wrote messages: p_senders are their
-- senders (null for a system message), p_first_seq the first one's seq. A busy room
-- costs one scan of its members' flags per write and no feed writes until someone
-- reads.
create function hark_api.feed_unread(p_tenant_id uuid, p_room_id uuid, p_senders uuid[], p_first_seq bigint)
returns void
language plpgsql
as $$
declare
    v_users uuid[];
begin
    -- A member is made unread by a message of anyone else: not when every sender of
    -- these messages is the member (a system message has no sender: everyone's).
    with flagged as (
        update hark.room_members m set has_unread = true
        where m.tenant_id = p_tenant_id and m.room_id = p_room_id and not m.has_unread
          and not (p_senders <@ array[m.user_id])
        returning m.user_id)
    select array_agg(user_id order by user_id) into v_users from flagged;
    if v_users is not null then
        perform hark_api.feed_append(v_users, 'feed.unread',
            hark_api.feed_room(p_room_id) || jsonb_build_object('seq', p_first_seq));
    end if;
end
$$;

-- A page of a feed for subscribers the instance has already authorised, shaped like
-- hark_api.log_page's; last_seq is null once the user is deleted.
create function hark_api.feed_page(
    p_tenant_id uuid, p_user_id uuid, p_after_seq bigint, p_upto_seq bigint, p_limit integer,
    p_max_bytes integer)
returns jsonb
language plpgsql
stable
as $$
begin
    return (select jsonb_build_object(
            'items', hark_api.page_within(coalesce((
                select jsonb_agg(hark_api.feed_event_json(row(page.*)::hark.user_events) order by page.seq)
                from (
                    select * from hark.user_events e
                    where e.tenant_id = p_tenant_id and e.user_id = p_user_id
                      and e.seq > p_after_seq
                      and (p_upto_seq is null or e.seq <= p_upto_seq)
                    order by e.seq
                    limit p_limit
                ) page), '[]'::jsonb), p_max_bytes),
            'last_seq', (
                select coalesce(f.last_seq, 0)
                from hark.users u
                left join hark.user_feeds f on f.tenant_id = u.tenant_id and f.user_id = u.id
                where u.tenant_id = p_tenant_id and u.id = p_user_id and u.deleted_at is null)));
end
$$;

-- The caller's own feed, after a seq (REST): the same events as its stream.
create function hark_api.feed_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_after_seq bigint, p_limit integer,
    p_max_bytes integer)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    return hark_api.feed_page(p_tenant_id, p_user_id, p_after_seq, null, p_limit, p_max_bytes);
end
$$;

-- Of p_candidates, the users who share a room with p_user_id: whose feeds hear that
-- user's presence changes. Answers an array of ids.
create function hark_api.users_sharing_a_room(p_tenant_id uuid, p_user_id uuid, p_candidates uuid[])
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter(p_tenant_id, null);
    return coalesce((
        select jsonb_agg(distinct other.user_id)
        from hark.room_members mine
        join hark.room_members other on other.tenant_id = mine.tenant_id and other.room_id = mine.room_id
        where mine.tenant_id = p_tenant_id and mine.user_id = p_user_id
          and other.user_id = any(p_candidates)
          and other.user_id <> p_user_id), '[]'::jsonb);
end
$$;

-- Replaces what instance p_instance_id recorded as connected with p_pairs (an array
-- of {tenant_id, user_id}) and its connections per tenant with p_counts (an array of
-- {tenant_id, connections}), valid for p_ttl_ms, and forgets the rows of instances
-- that stopped syncing. The users of p_seen (same shape as p_pairs: those who came or
-- went on the instance since its last sync, a short visit included) are seen now
-- (users.last_seen_at).
create function hark_api.connections_sync(
    p_instance_id uuid, p_ttl_ms bigint, p_pairs jsonb, p_seen jsonb, p_counts jsonb)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_tenant record;
    -- The instance's connected users and tenants as arrays, which a statement over
    -- every shard can take (a function as a table cannot be sent to them).
    v_pairs text[] := array(select p.tenant_id::text || '/' || p.user_id::text
                            from jsonb_to_recordset(p_pairs) as p(tenant_id uuid, user_id uuid));
    v_tenants uuid[] := array(select p.tenant_id from jsonb_to_recordset(p_counts) as p(tenant_id uuid));
begin
    perform hark_api.enter(null, null), hark_api.set_local('hark.connections', 'on');
    delete from hark.user_connections c
    where c.instance_id = p_instance_id
      and not (c.tenant_id::text || '/' || c.user_id::text = any (v_pairs));
    insert into hark.user_connections (tenant_id, user_id, instance_id, seen_until)
    select p.tenant_id, p.user_id, p_instance_id, now() + p_ttl_ms * interval '1 millisecond'
    from jsonb_to_recordset(p_pairs) as p(tenant_id uuid, user_id uuid)
    on conflict (tenant_id, user_id, instance_id) do update set seen_until = excluded.seen_until;
    delete from hark.user_connections where seen_until < now();
    delete from hark.tenant_connections c
    where (c.instance_id = p_instance_id and not (c.tenant_id = any (v_tenants)))
       or c.seen_until < now();
    insert into hark.tenant_connections (tenant_id, instance_id, connections, seen_until)
    select p.tenant_id, p_instance_id, p.connections, now() + p_ttl_ms * interval '1 millisecond'
    from jsonb_to_recordset(p_counts) as p(tenant_id uuid, connections integer)
    on conflict (tenant_id, instance_id) do update
        set connections = excluded.connections, seen_until = excluded.seen_until;
    -- Users are updated tenant by tenant, under each tenant's row-level security.
    for v_tenant in
        select s.tenant_id, array_agg(s.user_id) as user_ids
        from jsonb_to_recordset(p_seen) as s(tenant_id uuid, user_id uuid)
        group by s.tenant_id
    loop
        perform hark_api.set_local('hark.tenant_id', v_tenant.tenant_id::text);
        update hark.users set last_seen_at = v_now
        where tenant_id = v_tenant.tenant_id and id = any(v_tenant.user_ids);
    end loop;
end
$$;

-- Of a room's members, those who are not connected now (no live row in
-- hark.user_connections) and did not send p_sender_id's message: whom a
-- notification.message webhook names. Answers an array of ids, in id order.
create function hark_api.members_not_connected(p_room_id uuid, p_sender_id uuid)
returns jsonb
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select coalesce(jsonb_agg(m.user_id order by m.user_id), '[]'::jsonb)
        from hark.room_members m
        where m.tenant_id = v_current_tenant and m.room_id = p_room_id
          and m.user_id is distinct from p_sender_id
          and not exists (
              select 1 from hark.user_connections c
              where c.tenant_id = m.tenant_id and c.user_id = m.user_id and c.seen_until > now()));
end
$$;
