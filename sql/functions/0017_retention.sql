-- Retention: the messages of a tenant with retention_days, or of a room with its own
-- (the shorter of the two applies), become tombstones once older (body, attachment, earlier versions, reactions and mentions gone; the row and
-- its seq stay, so replies keep their parent and history its order), and the room's
-- event log loses the events older than that which are also beyond the replay window
-- (a subscriber that far behind is told to reset, as beyond the window already). In
-- bounded batches, one short transaction each, run by any instance's background task;
-- one instance at a time per tenant (an advisory lock held by the transaction).

-- The advisory lock class of retention work (the first key; the tenant is the second).
create function hark_api.retention_lock_class()
returns integer
language sql
immutable
as $$ select 1953 $$;

-- Applies retention to one room of the current tenant: up to p_batch messages older
-- than p_cutoff become tombstones, else up to p_batch events older than p_cutoff and
-- at least p_replay_window behind the room's newest go. Answers how many rows changed.
create function hark_api.retention_room(
    p_room hark.rooms, p_cutoff timestamptz, p_batch integer, p_replay_window bigint)
returns integer
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_mark hark.room_retention;
    v_to bigint;
    v_count integer;
begin
    insert into hark.room_retention (tenant_id, room_id) values (p_room.tenant_id, p_room.id)
    on conflict do nothing;
    select * into v_mark from hark.room_retention
    where tenant_id = p_room.tenant_id and room_id = p_room.id;
    -- Messages come in seq order; those older than the cutoff are a prefix of the
    -- ones after the mark (a seq follows commit order, created_at the write's start,
    -- so the prefix stops at the first newer one).
    select max(seq) into v_to from (
        select seq, bool_and(created_at < p_cutoff) over (order by seq) as old
        from (select seq, created_at from hark.messages
              where tenant_id = p_room.tenant_id and room_id = p_room.id and seq > v_mark.messages_to_seq
              order by seq limit p_batch) next) prefix
    where old;
    if v_to is not null then
        delete from hark.message_edits e using hark.messages m
        where m.tenant_id = p_room.tenant_id and m.room_id = p_room.id
          and m.seq > v_mark.messages_to_seq and m.seq <= v_to
          and e.tenant_id = m.tenant_id and e.message_id = m.id;
        delete from hark.reactions x using hark.messages m
        where m.tenant_id = p_room.tenant_id and m.room_id = p_room.id
          and m.seq > v_mark.messages_to_seq and m.seq <= v_to
          and x.tenant_id = m.tenant_id and x.message_id = m.id;
        delete from hark.mentions
        where tenant_id = p_room.tenant_id and room_id = p_room.id
          and seq > v_mark.messages_to_seq and seq <= v_to;
        update hark.messages
        set body = '', attachment = null, pinned_at = null, pinned_by = null,
            deleted_at = coalesce(deleted_at, v_now)
        where tenant_id = p_room.tenant_id and room_id = p_room.id
          and seq > v_mark.messages_to_seq and seq <= v_to;
        get diagnostics v_count = row_count;
        update hark.room_retention set messages_to_seq = v_to
        where tenant_id = p_room.tenant_id and room_id = p_room.id;
        return greatest(v_count, 1);
    end if;
    -- The event log, once the webhook outbox no longer needs the room's events.
    if exists (select 1 from hark.webhook_outbox o where o.tenant_id = p_room.tenant_id and o.room_id = p_room.id) then
        return 0;
    end if;
    select max(seq) into v_to from (
        select seq, bool_and(created_at < p_cutoff) over (order by seq) as old
        from (select seq, created_at from hark.room_events
              where tenant_id = p_room.tenant_id and room_id = p_room.id
                and seq > v_mark.events_to_seq and seq <= p_room.last_seq - p_replay_window
              order by seq limit p_batch) next) prefix
    where old;
    if v_to is null then
        return 0;
    end if;
    delete from hark.room_events
    where tenant_id = p_room.tenant_id and room_id = p_room.id
      and seq > v_mark.events_to_seq and seq <= v_to;
    get diagnostics v_count = row_count;
    update hark.room_retention set events_to_seq = v_to
    where tenant_id = p_room.tenant_id and room_id = p_room.id;
    return greatest(v_count, 1);
end
$$;

-- One batch of retention work, for the first tenant with retention that has some and
-- that no other instance is working on. Answers how many rows changed (a JSON number):
-- 0 when there is nothing to do.
create function hark_api.retention_batch(p_batch integer, p_replay_window bigint)
returns jsonb
language plpgsql
as $$
declare
    v_tenant hark.tenants;
    v_room hark.rooms;
    v_count integer;
begin
    -- Every tenant's row is visible to the operator's context, and stays so below.
    perform hark_api.enter_operator();
    for v_tenant in
        select * from hark.tenants
        where (retention_days is not null or room_retention) and deleted_at is null
        order by id
    loop
        continue when not pg_try_advisory_xact_lock(hark_api.retention_lock_class(), hashtext(v_tenant.id::text));
        perform hark_api.enter(v_tenant.id, null);
        -- A room keeps the shorter of its own retention and its tenant's.
        for v_room in
            select * from hark.rooms
            where tenant_id = v_tenant.id and (v_tenant.retention_days is not null or retention_days is not null)
            order by id
        loop
            v_count := hark_api.retention_room(
                v_room, now() - make_interval(days => least(v_room.retention_days, v_tenant.retention_days)),
                p_batch, p_replay_window);
            if v_count > 0 then
                return to_jsonb(v_count);
            end if;
        end loop;
    end loop;
    return to_jsonb(0);
end
$$;
