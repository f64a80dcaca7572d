-- Webhooks: endpoints managed by a tenant's owners, admins and API keys, the outbox
-- that every event writer fills in its own transaction, and the functions with which
-- every instance's delivery worker claims and settles deliveries.

-- The event types an endpoint may ask for. Room events are the log's types (a room's
-- creation is its first member.joined); the others are written by the functions that
-- cause them.
create function hark_api.webhook_event_types()
returns text[]
language sql
immutable
as $$
    select array[
        'message.created', 'message.edited', 'message.deleted', 'message.pinned', 'message.unpinned',
        'reaction.added', 'reaction.removed',
        'member.joined', 'member.left', 'member.role_changed',
        'member.muted', 'member.unmuted', 'member.banned', 'member.unbanned',
        'room.updated', 'room.archived', 'room.deleted',
        'user.created', 'user.updated', 'user.deleted', 'user.banned', 'user.unbanned', 'tenant.updated',
        'report.created', 'report.resolved',
        'webhook.disabled', 'webhook.test', 'notification.message', 'notification.mention']
$$;

create function hark_api.webhook_json(p_webhook hark.webhooks)
returns jsonb
language plpgsql
stable
as $$
begin
    return (select jsonb_build_object(
            'id', p_webhook.id,
            'url', p_webhook.url,
            'description', p_webhook.description,
            'event_types', to_jsonb(p_webhook.event_types),
            'enabled', p_webhook.enabled,
            'disabled_reason', p_webhook.disabled_reason,
            'failing_since', p_webhook.failing_since,
            'previous_secret_until', case when p_webhook.previous_secret_until > now()
                                          then p_webhook.previous_secret_until end,
            'backlog', (select count(*) from hark.webhook_deliveries d
                        where d.tenant_id = p_webhook.tenant_id and d.webhook_id = p_webhook.id
                          and d.state = 'pending'),
            'created_at', p_webhook.created_at,
            'updated_at', p_webhook.updated_at));
end
$$;

create function hark_api.webhook_check_event_types(p_event_types text[])
returns void
language plpgsql
as $$
begin
    if p_event_types is null or cardinality(p_event_types) = 0 or cardinality(p_event_types) > 50
       or exists (select from unnest(p_event_types) t
                  where t is null or (t <> '*' and t <> all (hark_api.webhook_event_types()))) then
        perform hark_api.fail(422, 'invalid_event_types',
            'event_types lists 1 to 50 of the documented event types, or "*" for all', 'event_types');
    end if;
end
$$;

create function hark_api.find_webhook(p_webhook_id uuid, p_lock boolean)
returns hark.webhooks
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_webhook hark.webhooks;
begin
    if p_lock then
        select * into v_webhook from hark.webhooks
        where tenant_id = v_current_tenant and id = p_webhook_id
        for update;
    else
        select * into v_webhook from hark.webhooks
        where tenant_id = v_current_tenant and id = p_webhook_id;
    end if;
    if v_webhook.id is null then
        perform hark_api.fail(404, 'webhook_not_found', 'No such webhook');
    end if;
    return v_webhook;
end
$$;

-- Creates an endpoint. The URL was checked by the server (scheme and address); the
-- secret was drawn there and is answered once, by the server.
create function hark_api.webhook_create(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_webhook_id uuid, p_url text, p_description text, p_event_types text[], p_secret text)
returns jsonb
language plpgsql
as $$
declare
    v_webhook hark.webhooks;
    v_event_types text[];
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.webhook_check_event_types(p_event_types);
    perform hark_api.require_quota(p_tenant_id, 'webhook_endpoints', 1);
    -- Sorted first: Citus takes no subqueries in an INSERT's VALUES.
    v_event_types := array(select distinct unnest(p_event_types) order by 1);
    insert into hark.webhooks (tenant_id, id, url, description, event_types, secret)
    values (p_tenant_id, p_webhook_id, p_url, coalesce(p_description, ''), v_event_types, p_secret)
    returning * into v_webhook;
    perform hark_api.audit('webhook.create', 'webhook', p_webhook_id, null, null,
        jsonb_build_object('url', p_url, 'event_types', v_webhook.event_types));
    return hark_api.webhook_json(v_webhook);
end
$$;

create function hark_api.webhook_list(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    return coalesce(
        (select jsonb_agg(hark_api.webhook_json(row(w.*)::hark.webhooks) order by w.created_at desc, w.id desc)
         from hark.webhooks w where w.tenant_id = p_tenant_id),
        '[]'::jsonb);
end
$$;

create function hark_api.webhook_get(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_webhook_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    return hark_api.webhook_json(hark_api.find_webhook(p_webhook_id, false));
end
$$;

-- Changes an endpoint: url, description, event_types, enabled. Enabling an endpoint
-- clears why it was disabled and its failure streak; its pending deliveries resume.
create function hark_api.webhook_update(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_webhook_id uuid, p_patch jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_webhook hark.webhooks;
    v_event_types text[];
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    v_webhook := hark_api.find_webhook(p_webhook_id, true);
    if p_patch ? 'event_types' then
        v_event_types := array(select jsonb_array_elements_text(p_patch -> 'event_types'));
        perform hark_api.webhook_check_event_types(v_event_types);
        v_webhook.event_types := array(select distinct unnest(v_event_types) order by 1);
    end if;
    if p_patch ? 'url' then
        v_webhook.url := p_patch ->> 'url';
    end if;
    if p_patch ? 'description' then
        v_webhook.description := coalesce(p_patch ->> 'description', '');
    end if;
    if p_patch ? 'enabled' then
        if (p_patch -> 'enabled')::boolean then
            if not v_webhook.enabled then
                v_webhook.enabled := true;
                v_webhook.disabled_reason := null;
                v_webhook.failing_since := null;
            end if;
        elsif v_webhook.enabled then
            v_webhook.enabled := false;
            v_webhook.disabled_reason := 'manual';
        end if;
    end if;
    update hark.webhooks
    set url = v_webhook.url, description = v_webhook.description, event_types = v_webhook.event_types,
        enabled = v_webhook.enabled, disabled_reason = v_webhook.disabled_reason,
        failing_since = v_webhook.failing_since, updated_at = v_now
    where tenant_id = p_tenant_id and id = p_webhook_id
    returning * into v_webhook;
    if v_webhook.enabled then
        perform pg_notify('hark_webhooks', '');
    end if;
    perform hark_api.audit('webhook.update', 'webhook', p_webhook_id, null, null, jsonb_build_object('patch', p_patch));
    return hark_api.webhook_json(v_webhook);
end
$$;

create function hark_api.webhook_delete(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_webhook_id uuid)
returns void
language plpgsql
as $$
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.find_webhook(p_webhook_id, true);
    delete from hark.webhooks where tenant_id = p_tenant_id and id = p_webhook_id;
    perform hark_api.audit('webhook.delete', 'webhook', p_webhook_id, null, null, '{}');
end
$$;

-- Replaces the signing secret; the old one keeps signing (beside the new one) for
-- p_grace_seconds, so that receivers can switch without refusing a delivery.
create function hark_api.webhook_rotate_secret(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_webhook_id uuid, p_secret text, p_grace_seconds integer)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_webhook hark.webhooks;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.find_webhook(p_webhook_id, true);
    update hark.webhooks
    set previous_secret = secret,
        previous_secret_until = v_now + make_interval(secs => greatest(p_grace_seconds, 0)),
        secret = p_secret,
        updated_at = v_now
    where tenant_id = p_tenant_id and id = p_webhook_id
    returning * into v_webhook;
    perform hark_api.audit('webhook.rotate_secret', 'webhook', p_webhook_id, null, null, '{}');
    return hark_api.webhook_json(v_webhook);
end
$$;

create function hark_api.webhook_delivery_json(p_delivery hark.webhook_deliveries)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p_delivery.id,
        'webhook_message_id', p_delivery.message_id,
        'event_type', p_delivery.event_type,
        'state', p_delivery.state,
        'attempts', p_delivery.attempts,
        'created_at', p_delivery.created_at,
        'next_attempt_at', case when p_delivery.state = 'pending' then p_delivery.next_attempt_at end,
        'last_attempt_at', p_delivery.last_attempt_at,
        'last_status', p_delivery.last_status,
        'last_error', p_delivery.last_error,
        'response_snippet', p_delivery.response_snippet,
        'latency_ms', p_delivery.latency_ms,
        'delivered_at', p_delivery.delivered_at,
        'payload', p_delivery.payload)
$$;

-- An endpoint's deliveries, newest first, before the cursor p_before (a delivery id),
-- optionally of one state; a page is cut at p_max_bytes of JSON like every page.
create function hark_api.webhook_deliveries(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_webhook_id uuid, p_before bigint, p_limit integer, p_state text, p_max_bytes integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_last bigint;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.find_webhook(p_webhook_id, false);
    select hark_api.page_within(
               coalesce(jsonb_agg(hark_api.webhook_delivery_json(row(d.*)::hark.webhook_deliveries) order by d.id desc), '[]'::jsonb),
               p_max_bytes)
    into v_items
    from (select * from hark.webhook_deliveries d
          where d.tenant_id = p_tenant_id and d.webhook_id = p_webhook_id
            and (p_before is null or d.id < p_before)
            and (p_state is null or d.state = p_state)
          order by d.id desc
          limit p_limit) d;
    v_last := (v_items -> -1 ->> 'id')::bigint;
    return jsonb_build_object(
        'items', v_items,
        'next_before', case when exists (
                                select 1 from hark.webhook_deliveries d
                                where d.tenant_id = p_tenant_id and d.webhook_id = p_webhook_id
                                  and d.id < v_last and (p_state is null or d.state = p_state))
                            then v_last end);
end
$$;

-- Sends again every delivery of the endpoint made since p_since that is no longer
-- pending, under its own webhook-id, in its original order: for a receiver that lost
-- what it had received. Answers how many deliveries were queued again.
create function hark_api.webhook_replay(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_webhook_id uuid, p_since timestamptz)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_count integer;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.find_webhook(p_webhook_id, true);
    update hark.webhook_deliveries
    set state = 'pending', next_attempt_at = v_now, lease_until = null
    where tenant_id = p_tenant_id and webhook_id = p_webhook_id
      and created_at >= p_since and state <> 'pending';
    get diagnostics v_count = row_count;
    if v_count > 0 then
        perform pg_notify('hark_webhooks', '');
    end if;
    return jsonb_build_object('queued', v_count);
end
$$;

-- Queues a webhook.test event for the endpoint alone, whatever its event types.
create function hark_api.webhook_test(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_webhook_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_delivery hark.webhook_deliveries;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.find_webhook(p_webhook_id, false);
    insert into hark.webhook_deliveries (tenant_id, webhook_id, message_id, order_key, event_type, payload)
    values (p_tenant_id, p_webhook_id, hark_api.webhook_message_id(), p_tenant_id, 'webhook.test',
            jsonb_build_object('type', 'webhook.test', 'timestamp', now(),
                               'data', jsonb_build_object('tenant_id', p_tenant_id, 'webhook_id', p_webhook_id)))
    returning * into v_delivery;
    perform pg_notify('hark_webhooks', '');
    return hark_api.webhook_delivery_json(v_delivery);
end
$$;

create function hark_api.webhook_message_id()
returns text
language sql
volatile
as $$ select 'msg_' || replace(gen_random_uuid()::text, '-', '') $$;

-- Queues events ({type, timestamp, data}, in order) of p_order_key's chain that are
-- not in a room's log, in the transaction that wrote them, for the delivery workers
-- to fan out (hark_api.webhook_fanout), and wakes them.
create function hark_api.webhook_enqueue(p_tenant_id uuid, p_order_key uuid, p_events jsonb)
returns void
language plpgsql
as $$
begin
    insert into hark.webhook_outbox (tenant_id, order_key, events)
    values (p_tenant_id, p_order_key, p_events);
    perform pg_notify('hark_webhooks', '');
end
$$;

-- Turns events into deliveries, one per event and enabled endpoint that asked for its
-- type and existed when the events were written (p_written_at), in event order.
create function hark_api.webhook_deliveries_insert(
    p_tenant_id uuid, p_order_key uuid, p_events jsonb, p_written_at timestamptz)
returns void
language plpgsql
as $$
declare
    v_count bigint;
begin
    -- A statement that returns its rows: Citus writes the rows of any other INSERT …
    -- SELECT whose source is not a table of its own by COPY, which row-level security
    -- refuses.
    with written as (
        insert into hark.webhook_deliveries
            (tenant_id, webhook_id, message_id, order_key, event_type, payload, created_at, next_attempt_at)
        select p_tenant_id, w.id, hark_api.webhook_message_id(), p_order_key, e.event ->> 'type', e.event,
               p_written_at, now()
        from jsonb_array_elements(p_events) with ordinality as e(event, position)
        join hark.webhooks w
          on w.tenant_id = p_tenant_id and w.enabled and w.created_at <= p_written_at
         and ((e.event ->> 'type') = any (w.event_types) or '*' = any (w.event_types))
        order by e.position, w.id
        returning 1)
    select count(*) into v_count from written;
end
$$;

-- The fan-out: turns up to p_limit of the oldest outbox rows, of every tenant, into
-- deliveries, reading room events from the log, and removes them; answers how many it
-- took (as JSON, like every answer of the SQL API). One instance fans out at a time
-- (an advisory lock; the others answer 0 at once), so that deliveries of a chain are
-- created in the order of its rows: rows of one room are written under its lock, so
-- their ids follow their commits.
create function hark_api.webhook_fanout(p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_row hark.webhook_outbox;
    v_events jsonb;
    v_count integer := 0;
begin
    perform hark_api.enter_delivery();
    -- "HWOB" in ASCII.
    if not pg_try_advisory_xact_lock(x'48574f42'::bigint) then
        return to_jsonb(0);
    end if;
    for v_row in select * from hark.webhook_outbox order by id limit p_limit loop
        if v_row.room_id is null then
            v_events := v_row.events;
        else
            -- The log's rows are the tenant's: read them under its row-level security.
            perform hark_api.set_local('hark.tenant_id', v_row.tenant_id::text);
            select jsonb_agg(item.event order by item.seq, item.sub) into v_events
            from (
                select jsonb_build_object(
                           'type', e.type, 'timestamp', e.created_at,
                           'data', hark_api.event_json(row(e.*)::hark.room_events) || jsonb_build_object('tenant_id', e.tenant_id)) as event,
                       e.seq, 0 as sub
                from hark.room_events e
                where e.tenant_id = v_row.tenant_id and e.room_id = v_row.room_id
                  and e.seq between v_row.first_seq and v_row.last_seq
                union all
                -- Each message is followed by whom to push it to, as it was when sent.
                select jsonb_build_object(
                           'type', 'notification.message', 'timestamp', e.created_at,
                           'data', jsonb_build_object(
                               'tenant_id', e.tenant_id, 'room_id', e.room_id, 'message', e.data,
                               'user_ids', v_row.notifications -> e.seq::text)),
                       e.seq, 1
                from hark.room_events e
                where v_row.notifications is not null
                  and e.tenant_id = v_row.tenant_id and e.room_id = v_row.room_id
                  and e.seq between v_row.first_seq and v_row.last_seq
                  and v_row.notifications ? e.seq::text
            ) item;
            perform hark_api.set_local('hark.tenant_id', '');
        end if;
        if v_events is not null then
            perform hark_api.webhook_deliveries_insert(v_row.tenant_id, v_row.order_key, v_events, v_row.created_at);
        end if;
        delete from hark.webhook_outbox where tenant_id = v_row.tenant_id and id = v_row.id;
        v_count := v_count + 1;
    end loop;
    return to_jsonb(v_count);
end
$$;

-- Whether the tenant has an enabled endpoint: writers skip building payloads otherwise.
create function hark_api.webhooks_enabled(p_tenant_id uuid)
returns boolean
language plpgsql
stable
as $$
begin
    return (select exists (select 1 from hark.webhooks where tenant_id = p_tenant_id and enabled));
end
$$;

-- Queues one event that is not in a room's log (a room's deletion, users, the
-- tenant's settings, endpoints) for the endpoints: {type, timestamp: now, data:
-- {tenant_id} and p_data}, in order with the other events of p_order_key (the room,
-- or the tenant).
create function hark_api.webhook_event(p_tenant_id uuid, p_order_key uuid, p_type text, p_data jsonb)
returns void
language plpgsql
as $$
begin
    if hark_api.webhooks_enabled(p_tenant_id) then
        perform hark_api.webhook_enqueue(p_tenant_id, p_order_key, jsonb_build_array(jsonb_build_object(
            'type', p_type, 'timestamp', now(),
            'data', jsonb_build_object('tenant_id', p_tenant_id) || p_data)));
    end if;
end
$$;

-- Queues room events just written to the log (event_json's shape, in seq order) for
-- the endpoints: one outbox row naming the stretch of the log, without the events
-- themselves. When an endpoint wants notification.message, the members not connected
-- now are kept with it for each new message.
create function hark_api.webhook_enqueue_room_events(p_tenant_id uuid, p_room_id uuid, p_events jsonb)
returns void
language plpgsql
as $$
declare
    v_enabled boolean;
    v_notify boolean;
    v_notifications jsonb;
begin
    -- One look at the tenant's endpoints (at most 20): any enabled, and any of them
    -- wanting notification.message.
    select count(*) > 0, coalesce(bool_or(event_types && array['notification.message', '*']), false)
    into v_enabled, v_notify
    from hark.webhooks where tenant_id = p_tenant_id and enabled;
    if not v_enabled then
        return;
    end if;
    if v_notify then
        select jsonb_object_agg(n.seq, n.user_ids) into v_notifications
        from (
            select e ->> 'seq' as seq,
                   hark_api.members_not_connected(p_room_id, (e -> 'data' -> 'sender' ->> 'id')::uuid) as user_ids
            from jsonb_array_elements(p_events) e
            where e ->> 'type' = 'message.created'
        ) n
        where jsonb_array_length(n.user_ids) > 0;
    end if;
    insert into hark.webhook_outbox (tenant_id, order_key, room_id, first_seq, last_seq, notifications)
    values (p_tenant_id, p_room_id, p_room_id,
            (p_events -> 0 ->> 'seq')::bigint, (p_events -> -1 ->> 'seq')::bigint, v_notifications);
    perform pg_notify('hark_webhooks', '');
end
$$;

-- Enters the delivery workers' view: every tenant's endpoints and deliveries.
create function hark_api.enter_delivery()
returns void
language plpgsql
as $$
begin
    perform hark_api.enter(null, null), hark_api.set_local('hark.delivering', 'on');
end
$$;

-- Claims up to p_runs runs for this instance: a run is the next p_run_length pending
-- deliveries of one endpoint and order key, from the oldest, when that one is due and
-- nobody holds it. A run is leased for p_lease_seconds: another instance takes it
-- again only after that, so an instance that dies mid-delivery loses nothing. Chains
-- are visited round-robin from just past p_after ({webhook_id, order_key}, the last
-- chain this instance claimed), so that every chain gets its turn; the walk stops once
-- it has found p_runs. p_room says how many more runs the instance may take per
-- endpoint ({webhook_id: n}; p_endpoint_concurrency for those absent).
-- Answers {runs: [{webhook: {id, tenant_id, url, secrets}, deliveries: [{id,
-- tenant_id, message_id, payload, attempts, created_at}]}], after: the last chain
-- claimed, for the next claim's p_after}.
create function hark_api.webhook_claim(
    p_runs integer, p_run_length integer, p_lease_seconds integer, p_endpoint_concurrency integer,
    p_room jsonb, p_after jsonb)
returns jsonb
language plpgsql
-- The queue's walks must go along its index whatever the statistics say: planned
-- while the table was small (a plan is kept for the connection's life), they would
-- read and sort every waiting delivery once it is not. The plans' costs that these
-- settings inflate would make PostgreSQL compile them (JIT), which takes longer than
-- the claim itself.
set enable_seqscan = off
set enable_bitmapscan = off
set enable_sort = off
set enable_hashjoin = off
set enable_mergejoin = off
set jit = off
as $$
declare
    v_now timestamptz := now();
    v_nil constant uuid := '00000000-0000-0000-0000-000000000000';
    v_after_webhook uuid := coalesce((p_after ->> 'webhook_id')::uuid, v_nil);
    v_after_key uuid := coalesce((p_after ->> 'order_key')::uuid, v_nil);
    v_room jsonb := coalesce(p_room, '{}'::jsonb);
    v_left integer;
    v_head record;
    v_lap integer;
    v_start_webhook uuid;
    v_start_key uuid;
    v_tenants uuid[] := '{}';
    v_webhooks uuid[] := '{}';
    v_heads bigint[] := '{}';
    v_last jsonb;
    v_runs jsonb;
    v_index integer;
    v_locked record;
    v_deliveries jsonb;
    v_webhook jsonb;
begin
    perform hark_api.enter_delivery();
    -- Two laps: from just past the last chain claimed to the end, then from the start.
    for v_lap in 1..2 loop
        -- The heads of the chains (one per endpoint and order key: its first pending
        -- delivery) in (webhook_id, order_key) order from the lap's start, found by
        -- skipping through the queue's index: in (webhook_id, order_key, id) order,
        -- the first entry past a chain is the next chain's head. One probe per chain
        -- visited, however many deliveries wait in them; a statement of its own each
        -- time (not a recursive query, which Citus cannot send to every shard).
        v_start_webhook := case when v_lap = 1 then v_after_webhook else v_nil end;
        v_start_key := case when v_lap = 1 then v_after_key else v_nil end;
        loop
            select d.tenant_id, d.id, d.webhook_id, d.order_key, d.next_attempt_at, d.lease_until
            into v_head
            from hark.webhook_deliveries d
            where d.state = 'pending' and (d.webhook_id, d.order_key) > (v_start_webhook, v_start_key)
            order by d.webhook_id, d.order_key, d.id
            limit 1;
            exit when not found;
            v_start_webhook := v_head.webhook_id;
            v_start_key := v_head.order_key;
            exit when cardinality(v_heads) >= p_runs
                   or (v_lap = 2 and (v_head.webhook_id, v_head.order_key) > (v_after_webhook, v_after_key));
            continue when v_head.next_attempt_at > now() or v_head.lease_until > now();
            v_left := coalesce((v_room ->> v_head.webhook_id::text)::integer, p_endpoint_concurrency);
            continue when v_left <= 0;
            continue when not exists (
                select 1 from hark.webhooks w
                where w.tenant_id = v_head.tenant_id and w.id = v_head.webhook_id and w.enabled);
            v_room := jsonb_set(v_room, array[v_head.webhook_id::text], to_jsonb(v_left - 1));
            v_tenants := v_tenants || v_head.tenant_id;
            v_webhooks := v_webhooks || v_head.webhook_id;
            v_heads := v_heads || v_head.id;
            v_last := jsonb_build_object('webhook_id', v_head.webhook_id, 'order_key', v_head.order_key);
        end loop;
        exit when cardinality(v_heads) >= p_runs or v_after_webhook = v_nil;
    end loop;
    if cardinality(v_heads) = 0 then
        return jsonb_build_object('runs', '[]'::jsonb, 'after', p_after);
    end if;
    -- Each head is locked by its tenant's key (the only way Citus locks a row); a head
    -- another instance holds is skipped. Its run, the chain's next pending deliveries
    -- from it, is leased as a whole.
    v_runs := '[]'::jsonb;
    for v_index in 1..cardinality(v_heads) loop
        select d.id, d.webhook_id, d.order_key into v_locked
        from hark.webhook_deliveries d
        where d.tenant_id = v_tenants[v_index] and d.webhook_id = v_webhooks[v_index] and d.id = v_heads[v_index]
          and d.state = 'pending' and (d.lease_until is null or d.lease_until <= v_now)
        for update of d skip locked;
        continue when not found;
        with leased as (
            update hark.webhook_deliveries d
            set lease_until = v_now + make_interval(secs => p_lease_seconds)
            where d.tenant_id = v_tenants[v_index] and d.webhook_id = v_locked.webhook_id and d.id = any (array(
                select r.id from hark.webhook_deliveries r
                where r.tenant_id = v_tenants[v_index] and r.webhook_id = v_locked.webhook_id
                  and r.order_key = v_locked.order_key and r.state = 'pending' and r.id >= v_locked.id
                order by r.webhook_id, r.order_key, r.id
                limit p_run_length))
            returning d.*)
        select jsonb_agg(jsonb_build_object(
                   'id', l.id, 'tenant_id', l.tenant_id, 'message_id', l.message_id,
                   'payload', l.payload, 'attempts', l.attempts, 'created_at', l.created_at)
                 order by l.id)
        into v_deliveries
        from leased l;
        select jsonb_build_object(
                   'id', w.id, 'tenant_id', w.tenant_id, 'url', w.url,
                   'secrets', to_jsonb(array_remove(array[
                       w.secret,
                       case when w.previous_secret_until > v_now then w.previous_secret end], null)))
        into v_webhook
        from hark.webhooks w
        where w.tenant_id = v_tenants[v_index] and w.id = v_locked.webhook_id;
        v_runs := v_runs || jsonb_build_array(jsonb_build_object('webhook', v_webhook, 'deliveries', v_deliveries));
    end loop;
    return jsonb_build_object('runs', v_runs, 'after', v_last);
end
$$;

-- Records how a run went: p_outcomes is [{tenant_id, id, outcome, status?, error?,
-- snippet?, latency_ms?}] with outcome 'delivered', 'failed' or 'released' (not
-- attempted: the run stopped at a failure or ran out of time). A failed delivery is
-- tried again after an exponential backoff with jitter (from p_retry_base_ms, at most
-- an hour) until p_retry_for_seconds after it was made, then given up ('failed'); its
-- endpoint's later deliveries of the same order key wait behind it meanwhile. A 410
-- disables the endpoint; so does failing for p_disable_after_seconds, which the
-- tenant hears as webhook.disabled on its other endpoints.
create function hark_api.webhook_settle(
    p_webhook_id uuid, p_outcomes jsonb, p_retry_base_ms integer,
    p_retry_for_seconds integer, p_disable_after_seconds integer)
returns void
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_outcome record;
    v_webhook hark.webhooks;
    v_delivered boolean;
    v_failed boolean;
    v_gone boolean;
    v_jitter double precision;
    v_now_epoch double precision := extract(epoch from v_now);
    v_give_up_before timestamptz := v_now - make_interval(secs => p_retry_for_seconds);
begin
    perform hark_api.enter_delivery();
    -- The endpoint's row first, then its deliveries: the order in which deleting an
    -- endpoint takes them (its row, then its deliveries by the cascade), so that a
    -- settle and a deletion of the same endpoint wait for each other instead of
    -- deadlocking (a 503 `conflict_retry` for the deletion, found by the fuzzer).
    select * into v_webhook from hark.webhooks
    where tenant_id = (p_outcomes -> 0 ->> 'tenant_id')::uuid and id = p_webhook_id
    for no key update;
    if v_webhook.id is null then
        return;
    end if;
    -- One update by primary key per delivery: a run is at most a few dozen, and a
    -- join of the whole batch could be planned as a scan of the table.
    for v_outcome in
        select (o ->> 'tenant_id')::uuid as tenant_id, (o ->> 'id')::bigint as id, o ->> 'outcome' as outcome,
               (o ->> 'status')::integer as status, left(o ->> 'error', 500) as error,
               left(o ->> 'snippet', 500) as snippet, (o ->> 'latency_ms')::integer as latency_ms
        from jsonb_array_elements(p_outcomes) o
    loop
        if v_outcome.outcome = 'released' then
            update hark.webhook_deliveries set lease_until = null
            where tenant_id = v_outcome.tenant_id and webhook_id = p_webhook_id and id = v_outcome.id;
            continue;
        end if;
        -- Drawn before the update: Citus refuses volatile functions in one, and any but
        -- immutable ones in its CASEs (times are counted in epoch seconds there).
        v_jitter := 0.5 + random();
        update hark.webhook_deliveries d
        set lease_until = null,
            attempts = d.attempts + 1,
            state = case
                        when v_outcome.outcome = 'delivered' then 'delivered'
                        when d.created_at < v_give_up_before then 'failed'
                        else 'pending' end,
            next_attempt_at = case
                                  when v_outcome.outcome = 'failed' then to_timestamp(v_now_epoch +
                                      least(p_retry_base_ms / 1000.0 * power(2, least(d.attempts, 20))
                                            * v_jitter, 3600))
                                  else d.next_attempt_at end,
            last_attempt_at = v_now,
            last_status = v_outcome.status,
            last_error = v_outcome.error,
            response_snippet = v_outcome.snippet,
            latency_ms = v_outcome.latency_ms,
            delivered_at = case when v_outcome.outcome = 'delivered' then v_now end
        where d.tenant_id = v_outcome.tenant_id and d.webhook_id = p_webhook_id and d.id = v_outcome.id;
    end loop;

    select bool_or(o ->> 'outcome' = 'delivered'), bool_or(o ->> 'outcome' = 'failed'),
           bool_or(o ->> 'outcome' = 'failed' and (o ->> 'status')::integer = 410)
    into v_delivered, v_failed, v_gone
    from jsonb_array_elements(p_outcomes) o;

    if v_gone then
        update hark.webhooks set enabled = false, disabled_reason = 'gone', updated_at = v_now
        where tenant_id = v_webhook.tenant_id and id = p_webhook_id;
    elsif v_failed then
        update hark.webhooks set failing_since = coalesce(failing_since, v_now)
        where tenant_id = v_webhook.tenant_id and id = p_webhook_id
        returning * into v_webhook;
        if v_webhook.enabled and v_webhook.failing_since < now() - make_interval(secs => p_disable_after_seconds) then
            update hark.webhooks set enabled = false, disabled_reason = 'failing', updated_at = v_now
            where tenant_id = v_webhook.tenant_id and id = p_webhook_id;
            perform hark_api.webhook_event(v_webhook.tenant_id, v_webhook.tenant_id, 'webhook.disabled',
                jsonb_build_object('webhook_id', v_webhook.id, 'url', v_webhook.url,
                                   'reason', 'failing', 'failing_since', v_webhook.failing_since));
        end if;
    elsif v_delivered and v_webhook.failing_since is not null then
        update hark.webhooks set failing_since = null
        where tenant_id = v_webhook.tenant_id and id = p_webhook_id;
    end if;
end
$$;

-- Deletes up to p_batch finished deliveries made more than p_keep_seconds ago.
-- Answers how many went (a JSON number).
create function hark_api.webhook_sweep(p_keep_seconds integer, p_batch integer)
returns jsonb
language plpgsql
as $$
declare
    v_count integer;
begin
    perform hark_api.enter_delivery();
    delete from hark.webhook_deliveries
    where (tenant_id, webhook_id, id) in (
        select tenant_id, webhook_id, id from hark.webhook_deliveries
        where state <> 'pending' and created_at < now() - make_interval(secs => p_keep_seconds)
        order by created_at
        limit p_batch);
    get diagnostics v_count = row_count;
    return to_jsonb(v_count);
end
$$;

-- The queue as metrics see it: pending deliveries and the age of the oldest, over
-- every endpoint.
create function hark_api.webhook_backlog()
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_delivery();
    -- Outbox rows not fanned out yet count once each (a row may hold several events).
    return (select jsonb_build_object(
                'pending', count(*),
                'oldest_seconds', coalesce(extract(epoch from now() - min(created_at)), 0))
            from (select created_at from hark.webhook_deliveries where state = 'pending'
                  union all
                  select created_at from hark.webhook_outbox) queued);
end
$$;
