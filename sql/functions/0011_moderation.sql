-- Moderation and user safety (migration 0009): blocks, reports and the moderation
-- queue, room mutes and bans, tenant-wide bans, slow mode, word filters and the audit
-- log. The rules that guard sending (mutes, blocks in direct rooms, slow mode, word
-- filters) are called from hark_api.message_check, the one copy of the send rules, so
-- every path that sends obeys them: REST, WebSocket, batches and API keys alike.

-- The regular expression of one folded filter term: the term as a whole word (not
-- inside a longer word; an edge in a script written without spaces matches anywhere),
-- with * standing for any letters.
create function hark_api.filter_regex(p_folded text)
returns text
language sql
immutable
parallel safe
as $$
    select case when left(p_folded, 1) collate "und-x-icu" ~ '[[:alnum:]]' and left(p_folded, 1) !~ '[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]'
                then '(?<![[:alnum:]_])' else '' end
        || replace(regexp_replace(p_folded, '([.^$|()\[\]{}+?\\])', '\\\1', 'g'), '*', '[[:alnum:]_]*')
        || case when right(p_folded, 1) collate "und-x-icu" ~ '[[:alnum:]]' and right(p_folded, 1) !~ '[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]'
                then '(?![[:alnum:]_])' else '' end
$$;

-- A UUIDv7 made in SQL (PostgreSQL 15 has none), for rows that SQL creates among rows
-- whose ids the server makes, so that id order stays creation order.
create function hark_api.new_id()
returns uuid
language sql
volatile
as $$
    select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
        from 1 for 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- The role the caller acts with in the tenant: the current user's, also when an API
-- key acts as that user; an API key acting for itself (no user) acts with its
-- creator's.
create function hark_api.actor_role()
returns text
language plpgsql
stable
as $$
begin
    if hark_api.current_user_id() is null then
        return nullif(current_setting('hark.key_role', true), '');
    end if;
    return hark_api.caller_role();
end
$$;

-- Whether the caller moderates the whole tenant: an owner, admin or moderator, or an
-- API key acting for itself.
create function hark_api.is_tenant_moderator()
returns boolean
language plpgsql
stable
as $$
begin
    return coalesce(hark_api.role_rank(hark_api.actor_role()) >= hark_api.role_rank('moderator'), false);
end
$$;

-- Enters the context of a tenant moderator: a user whose role is owner, admin or
-- moderator, or an API key.
create function hark_api.enter_moderator(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea)
returns text
language plpgsql
as $$
declare
    v_role text := hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash);
begin
    if hark_api.role_rank(v_role) < hark_api.role_rank('moderator') then
        perform hark_api.fail(403, 'forbidden', 'Only owners, admins and moderators of the tenant may do this');
    end if;
    return v_role;
end
$$;

-- Records an action in the audit log, in the caller's transaction, with who acted:
-- the current user, and the API key when one acts (alone or as the user).
create function hark_api.audit(
    p_action text, p_target_type text, p_target_id uuid, p_room_id uuid, p_reason text, p_data jsonb)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    insert into hark.audit_log (tenant_id, actor_id, actor_key_id, action, target_type, target_id, room_id, reason, data)
    values (v_current_tenant, hark_api.current_user_id(),
            nullif(current_setting('hark.key_id', true), '')::uuid,
            p_action, p_target_type, p_target_id, p_room_id, p_reason, coalesce(p_data, '{}'));
end
$$;

-- Whether either of two users blocked the other.
create function hark_api.blocked_between(p_a uuid, p_b uuid)
returns boolean
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select exists (
            select 1 from hark.blocks
            where tenant_id = v_current_tenant
              and ((blocker_id = p_a and blocked_id = p_b) or (blocker_id = p_b and blocked_id = p_a))));
end
$$;

-- The users the viewer blocked, for marking their messages in the viewer's history.
create function hark_api.blocked_by(p_viewer_id uuid)
returns uuid[]
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select coalesce(array_agg(blocked_id), '{}')
        from hark.blocks
        where tenant_id = v_current_tenant and blocker_id = p_viewer_id);
end
$$;

-- A message as a viewer who blocked its sender sees it in history: marked hidden,
-- without its body and attachment. Others pass unchanged.
create function hark_api.hide_blocked(p_message jsonb, p_blocked uuid[])
returns jsonb
language sql
immutable
as $$
    select case when cardinality(p_blocked) > 0 and (p_message -> 'sender' ->> 'id')::uuid = any (p_blocked)
                then p_message || jsonb_build_object('body', '', 'attachment', null, 'hidden', true)
                else p_message end
$$;

-- What the send rules need of the current user in a room, in one probe of the
-- membership: their role (null: not a member) and the end of their mute, if any.
create function hark_api.sender_state(p_room_id uuid)
returns jsonb
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return coalesce((
        select jsonb_build_object('role', role, 'muted_until', muted_until)
        from hark.room_members
        where tenant_id = v_current_tenant and room_id = p_room_id
          and user_id = hark_api.current_user_id()), '{}');
end
$$;

-- The end of a user's mute in force in a room ('infinity': until lifted), or null:
-- what room_members.muted_until mirrors.
create function hark_api.mute_until(p_room_id uuid, p_user_id uuid)
returns timestamptz
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select coalesce(expires_at, 'infinity') from hark.room_restrictions
        where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id
          and kind = 'mute' and (expires_at is null or expires_at > now()));
end
$$;

-- Fails with 403 muted while a mute (its end, from room_members.muted_until) lasts.
create function hark_api.require_not_muted(p_until timestamptz)
returns void
language plpgsql
as $$
begin
    if p_until > now() then
        perform hark_api.fail(403, 'muted', case when p_until = 'infinity' then 'You are muted in this room'
            else format('You are muted in this room until %s', p_until) end);
    end if;
end
$$;

-- Fails with 403 blocked when one of the two members of a direct room blocked the
-- other.
create function hark_api.require_not_blocked(p_room_id uuid, p_user_id uuid)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    if exists (
        select 1 from hark.blocks b
        join hark.room_members o on o.tenant_id = b.tenant_id and o.room_id = p_room_id and o.user_id <> p_user_id
        where b.tenant_id = v_current_tenant
          and ((b.blocker_id = o.user_id and b.blocked_id = p_user_id)
               or (b.blocker_id = p_user_id and b.blocked_id = o.user_id))) then
        perform hark_api.fail(403, 'blocked', 'You cannot write to this user');
    end if;
end
$$;

-- May this member write into the room (edit, react)? Not while muted in it, and not in
-- a direct room between two users of whom one blocked the other (p_direct: the room
-- is direct). Sends check the same in hark_api.message_check, from the sender's state.
create function hark_api.require_may_post(p_room_id uuid, p_user_id uuid, p_direct boolean)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    perform hark_api.require_not_muted((
        select muted_until from hark.room_members
        where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id));
    if p_direct then
        perform hark_api.require_not_blocked(p_room_id, p_user_id);
    end if;
end
$$;

-- Slow mode: a member who is not exempt (room owners and admins, tenant moderators)
-- sends one message per p_seconds. Called under the room's lock, so concurrent sends
-- and batches see each other's last_sent_at; p_pending holds the senders a batch has
-- accepted in this room already ("slow/room/user").
create function hark_api.slow_mode_check(
    p_room_id uuid, p_user_id uuid, p_role text, p_seconds integer, p_pending jsonb)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_last timestamptz;
    v_left integer;
begin
    if coalesce(p_seconds, 0) = 0 or p_role in ('owner', 'admin') or p_user_id is null
       or hark_api.is_tenant_moderator() then
        return;
    end if;
    if p_pending ? ('slow/' || p_room_id || '/' || p_user_id) then
        v_left := p_seconds;
    else
        select last_sent_at into v_last from hark.room_members
        where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id;
        v_left := coalesce(ceil(p_seconds - extract(epoch from now() - v_last)), 0);
    end if;
    if v_left > 0 then
        raise exception using
            errcode = 'HK429',
            message = 'slow_mode',
            detail = format('Slow mode is on: you may send again in %s seconds', v_left),
            hint = v_left::text;
    end if;
end
$$;

-- The tenant's word filters as one regular expression per action
-- ({"block": …, "flag": …}), or null when it has none: read once per send or batch, so
-- that each message is matched without a query.
create function hark_api.filter_patterns()
returns jsonb
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (
        select jsonb_object_agg(f.action, f.regex)
        from (
            select action, string_agg(hark_api.filter_regex(folded), '|') as regex
            from hark.word_filters
            where tenant_id = v_current_tenant
            group by action
        ) f);
end
$$;

-- Refuses a text that a 'block' filter of p_patterns (hark_api.filter_patterns)
-- matches (422 blocked_content); answers whether a 'flag' filter matches it, so that
-- the writer queues it for moderators.
create function hark_api.filter_check(p_text text, p_patterns jsonb)
returns boolean
language plpgsql
as $$
declare
    v_folded text;
begin
    if p_patterns is null or jsonb_typeof(p_patterns) <> 'object' or coalesce(p_text, '') = '' then
        return false;
    end if;
    v_folded := hark.fold_text(p_text);
    if v_folded collate "und-x-icu" ~ (p_patterns ->> 'block') then
        perform hark_api.fail(422, 'blocked_content', 'The message contains words this chat does not accept', 'body');
    end if;
    return coalesce(v_folded collate "und-x-icu" ~ (p_patterns ->> 'flag'), false);
end
$$;

-- Puts a message a 'flag' filter matched into the moderation queue (once per message).
create function hark_api.flag_message(p_room_id uuid, p_message_id uuid, p_sender_id uuid, p_snapshot jsonb)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_id uuid := hark_api.new_id();
begin
    insert into hark.reports (tenant_id, id, reporter_id, target_user_id, room_id, message_id, reason, message_snapshot)
    values (v_current_tenant, v_id, null, p_sender_id, p_room_id, p_message_id, 'filtered', p_snapshot)
    on conflict (tenant_id, message_id) where reporter_id is null do nothing;
    if found then
        perform hark_api.report_announce(v_id, 'report.created');
    end if;
end
$$;

-- Whether the caller may moderate this room: its owners and admins, and the tenant's
-- moderators (and above) and API keys, members of the room or not. Answers the
-- caller's role in the room (null: not a member).
create function hark_api.require_room_moderator(p_room_id uuid)
returns text
language plpgsql
as $$
declare
    v_role text := hark_api.member_role(p_room_id);
begin
    if coalesce(v_role, '') not in ('owner', 'admin') and not hark_api.is_tenant_moderator() then
        perform hark_api.fail(403, 'forbidden', 'Only owners and admins of the room and moderators of the tenant may do this');
    end if;
    return v_role;
end
$$;

-- Whether the caller may restrict (mute, ban, remove) this user in this room: nobody
-- restricts themselves; a tenant moderator (or key) restricts users ranked below it in
-- the tenant; a room owner or admin restricts members ranked below them in the room
-- who do not rank above them in the tenant.
create function hark_api.require_may_restrict(p_room_id uuid, p_target_id uuid)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_actor_room text := hark_api.member_role(p_room_id);
    v_actor_tenant text := hark_api.actor_role();
    v_target_room text := hark_api.member_role_of(p_room_id, p_target_id);
    v_target_tenant text := (select role from hark.users where tenant_id = v_current_tenant and id = p_target_id and deleted_at is null);
    v_room_rank jsonb := '{"owner": 3, "admin": 2, "member": 1}';
begin
    if v_target_tenant is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user', 'user_id');
    end if;
    if p_target_id = hark_api.current_user_id() then
        perform hark_api.fail(409, 'cannot_restrict_self', 'Nobody mutes, bans or restricts themselves');
    end if;
    if hark_api.is_tenant_moderator()
       and hark_api.role_rank(v_target_tenant) < hark_api.role_rank(v_actor_tenant) then
        return;
    end if;
    if coalesce(v_actor_room, '') in ('owner', 'admin')
       and coalesce((v_room_rank ->> v_target_room)::int, 0) < (v_room_rank ->> v_actor_room)::int
       and hark_api.role_rank(v_target_tenant) <= hark_api.role_rank(v_actor_tenant) then
        return;
    end if;
    perform hark_api.fail(403, 'forbidden', 'You may not restrict this user here');
end
$$;

create function hark_api.restriction_json(p_restriction hark.room_restrictions)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'room_id', p_restriction.room_id,
        'user', hark_api.user_ref(p_restriction.user_id),
        'kind', p_restriction.kind,
        'reason', p_restriction.reason,
        'expires_at', p_restriction.expires_at,
        'created_by', p_restriction.created_by,
        'created_at', p_restriction.created_at)
$$;

-- Mutes or bans (p_kind) a user in a room, for p_seconds (null: until lifted), or
-- replaces the restriction there is. A ban removes the member; both are events of the
-- room's log and entries of the audit log.
create function hark_api.restrict_user(
    p_room hark.rooms, p_target_id uuid, p_kind text, p_reason text, p_seconds integer)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_restriction hark.room_restrictions;
begin
    perform hark_api.require_group(p_room);
    perform hark_api.require_may_restrict(p_room.id, p_target_id);
    if p_kind not in ('mute', 'ban') then
        perform hark_api.fail(422, 'invalid_kind', 'The kind must be mute or ban', 'kind');
    end if;
    if p_seconds is not null and p_seconds not between 1 and 31536000 then
        perform hark_api.fail(422, 'invalid_duration_seconds', 'The duration must be 1 second to a year', 'duration_seconds');
    end if;
    if p_reason is not null and char_length(p_reason) > 500 then
        perform hark_api.fail(422, 'invalid_reason', 'The reason must be at most 500 characters', 'reason');
    end if;
    insert into hark.room_restrictions (tenant_id, room_id, user_id, kind, reason, expires_at, created_by)
    values (p_room.tenant_id, p_room.id, p_target_id, p_kind, p_reason,
            now() + make_interval(secs => p_seconds), hark_api.current_user_id())
    on conflict (tenant_id, room_id, user_id, kind) do update
    set reason = excluded.reason, expires_at = excluded.expires_at, created_by = excluded.created_by,
        created_at = v_now
    returning * into v_restriction;
    if p_kind = 'ban' and hark_api.member_role_of(p_room.id, p_target_id) is not null then
        perform hark_api.remove_member(p_room.id, p_target_id, 'banned');
    elsif p_kind = 'mute' then
        update hark.room_members set muted_until = coalesce(v_restriction.expires_at, 'infinity')
        where tenant_id = p_room.tenant_id and room_id = p_room.id and user_id = p_target_id;
    end if;
    perform hark_api.append_event(p_room.id, case p_kind when 'mute' then 'member.muted' else 'member.banned' end,
        jsonb_build_object('user', hark_api.user_ref(p_target_id), 'reason', p_reason,
                           'expires_at', v_restriction.expires_at));
    perform hark_api.audit('room.' || p_kind, 'user', p_target_id, p_room.id, p_reason,
        jsonb_build_object('expires_at', v_restriction.expires_at));
    return hark_api.restriction_json(v_restriction);
end
$$;

create function hark_api.room_restrict(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_room_id uuid,
    p_target_id uuid, p_kind text, p_reason text, p_seconds integer)
returns jsonb
language plpgsql
as $$
declare
    v_room hark.rooms;
begin
    perform hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_room_moderator(p_room_id);
    return hark_api.restrict_user(v_room, p_target_id, p_kind, p_reason, p_seconds);
end
$$;

-- Lifts a mute or ban; lifting what is not there changes nothing.
create function hark_api.room_unrestrict(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_room_id uuid,
    p_target_id uuid, p_kind text)
returns void
language plpgsql
as $$
declare
    v_room hark.rooms;
begin
    perform hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    v_room := hark_api.lock_room(p_room_id);
    perform hark_api.require_room_moderator(p_room_id);
    perform hark_api.require_group(v_room);
    perform hark_api.require_may_restrict(p_room_id, p_target_id);
    delete from hark.room_restrictions
    where tenant_id = p_tenant_id and room_id = p_room_id and user_id = p_target_id and kind = p_kind;
    if found then
        if p_kind = 'mute' then
            update hark.room_members set muted_until = null
            where tenant_id = p_tenant_id and room_id = p_room_id and user_id = p_target_id;
        end if;
        perform hark_api.append_event(p_room_id, case p_kind when 'mute' then 'member.unmuted' else 'member.unbanned' end,
            jsonb_build_object('user', hark_api.user_ref(p_target_id)));
        perform hark_api.audit('room.un' || p_kind, 'user', p_target_id, p_room_id, null, '{}');
    end if;
end
$$;

-- A room's live mutes or bans, by user id (the room's moderators).
create function hark_api.room_restriction_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_room_id uuid,
    p_kind text, p_after uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_count integer;
    v_last uuid;
begin
    perform hark_api.enter_principal(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    if not hark_api.room_exists(p_tenant_id, p_room_id) then
        perform hark_api.fail(404, 'room_not_found', 'No such room');
    end if;
    perform hark_api.require_room_moderator(p_room_id);
    perform hark_api.check_limit(p_limit, 200);
    select coalesce(jsonb_agg(hark_api.restriction_json(row(page.*)::hark.room_restrictions) order by page.user_id), '[]'::jsonb),
           count(*), max(page.user_id::text)::uuid
    into v_items, v_count, v_last
    from (
        select * from hark.room_restrictions
        where tenant_id = p_tenant_id and room_id = p_room_id and kind = p_kind
          and (expires_at is null or expires_at > now())
          and (p_after is null or user_id > p_after)
        order by user_id
        limit p_limit
    ) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

-- Fails with 403 banned when the user is banned from the room (for joins and adds).
create function hark_api.require_not_banned(p_room_id uuid, p_user_id uuid)
returns void
language plpgsql
as $$
begin
    if hark_api.is_banned(p_room_id, p_user_id) then
        perform hark_api.fail(403, 'banned', 'This user is banned from the room');
    end if;
end
$$;

-- Whether a ban from the room holds for the user now.
create function hark_api.is_banned(p_room_id uuid, p_user_id uuid)
returns boolean
language plpgsql
stable
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    return (select exists (select 1 from hark.room_restrictions
                       where tenant_id = v_current_tenant and room_id = p_room_id and user_id = p_user_id
                         and kind = 'ban' and (expires_at is null or expires_at > now())));
end
$$;

-- Bans a user from the whole tenant, for p_seconds (null: until lifted): their sessions
-- are revoked (streams end on every instance) and they cannot log in, be minted a
-- session or be acted for. Moderators ban members; admins ban moderators too; owners
-- ban admins.
create function hark_api.ban_user(p_target_id uuid, p_reason text, p_seconds integer)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_target hark.users;
    v_current_tenant uuid := hark_api.current_tenant_id();
begin
    select * into v_target from hark.users
    where tenant_id = v_current_tenant and id = p_target_id and deleted_at is null for update;
    if v_target.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    if p_target_id = hark_api.current_user_id() then
        perform hark_api.fail(409, 'cannot_restrict_self', 'Nobody bans themselves');
    end if;
    if hark_api.role_rank(v_target.role) >= hark_api.role_rank(hark_api.actor_role()) then
        perform hark_api.fail(403, 'forbidden', 'Only a higher role may ban this user');
    end if;
    if p_seconds is not null and p_seconds not between 1 and 31536000 then
        perform hark_api.fail(422, 'invalid_duration_seconds', 'The duration must be 1 second to a year', 'duration_seconds');
    end if;
    if p_reason is not null and char_length(p_reason) > 500 then
        perform hark_api.fail(422, 'invalid_reason', 'The reason must be at most 500 characters', 'reason');
    end if;
    update hark.users
    set banned_at = v_now, ban_expires_at = v_now + make_interval(secs => p_seconds), ban_reason = p_reason,
        updated_at = v_now
    where tenant_id = v_current_tenant and id = p_target_id
    returning * into v_target;
    update hark.sessions set revoked_at = v_now
    where tenant_id = v_target.tenant_id and user_id = p_target_id and revoked_at is null;
    perform hark_api.announce_revocation(v_target.tenant_id, p_target_id, null);
    perform hark_api.audit('user.ban', 'user', p_target_id, null, p_reason,
        jsonb_build_object('expires_at', v_target.ban_expires_at));
    perform hark_api.webhook_event(v_target.tenant_id, v_target.tenant_id, 'user.banned', jsonb_build_object(
        'user', hark_api.user_json(v_target, true), 'reason', p_reason, 'actor_id', hark_api.current_user_id()));
    return hark_api.user_json(v_target, true);
end
$$;

create function hark_api.user_ban(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_target_id uuid,
    p_reason text, p_seconds integer)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_moderator(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    return hark_api.ban_user(p_target_id, p_reason, p_seconds);
end
$$;

-- Lifts a tenant-wide ban (the roles that may ban); lifting none changes nothing.
create function hark_api.user_unban(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_target_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_target hark.users;
begin
    perform hark_api.enter_moderator(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    select * into v_target from hark.users where tenant_id = p_tenant_id and id = p_target_id and deleted_at is null for update;
    if v_target.id is null then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    if hark_api.role_rank(v_target.role) >= hark_api.role_rank(hark_api.actor_role()) then
        perform hark_api.fail(403, 'forbidden', 'Only a higher role may lift this user''s ban');
    end if;
    if v_target.banned_at is null then
        return hark_api.user_json(v_target, true);
    end if;
    update hark.users set banned_at = null, ban_expires_at = null, ban_reason = null, updated_at = v_now
    where tenant_id = p_tenant_id and id = p_target_id
    returning * into v_target;
    perform hark_api.audit('user.unban', 'user', p_target_id, null, null, '{}');
    perform hark_api.webhook_event(p_tenant_id, p_tenant_id, 'user.unbanned', jsonb_build_object(
        'user', hark_api.user_json(v_target, true), 'actor_id', hark_api.current_user_id()));
    return hark_api.user_json(v_target, true);
end
$$;

-- Blocks a user (the caller's own list); blocking twice changes nothing. The
-- blocker's feed hears of it, so that their other devices hide the user too.
create function hark_api.block_add(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_target_id uuid)
returns jsonb
language plpgsql
as $$
declare
    v_block hark.blocks;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if p_target_id = p_user_id then
        perform hark_api.fail(422, 'invalid_user_id', 'Nobody blocks themselves', 'user_id');
    end if;
    if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_target_id and deleted_at is null) then
        perform hark_api.fail(404, 'user_not_found', 'No such user', 'user_id');
    end if;
    if (select count(*) from hark.blocks where tenant_id = p_tenant_id and blocker_id = p_user_id) >= 1000 then
        perform hark_api.fail(422, 'too_many_blocks', 'A user may block at most 1000 users', 'user_id');
    end if;
    insert into hark.blocks (tenant_id, blocker_id, blocked_id) values (p_tenant_id, p_user_id, p_target_id)
    on conflict do nothing
    returning * into v_block;
    if v_block.blocker_id is not null then
        perform hark_api.feed_append(array[p_user_id], 'feed.blocks_changed',
            jsonb_build_object('user_id', p_target_id, 'blocked', true));
    else
        select * into v_block from hark.blocks
        where tenant_id = p_tenant_id and blocker_id = p_user_id and blocked_id = p_target_id;
    end if;
    return jsonb_build_object('user', hark_api.user_ref(p_target_id), 'created_at', v_block.created_at);
end
$$;

create function hark_api.block_remove(p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_target_id uuid)
returns void
language plpgsql
as $$
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_target_id) then
        perform hark_api.fail(404, 'user_not_found', 'No such user');
    end if;
    delete from hark.blocks where tenant_id = p_tenant_id and blocker_id = p_user_id and blocked_id = p_target_id;
    if found then
        perform hark_api.feed_append(array[p_user_id], 'feed.blocks_changed',
            jsonb_build_object('user_id', p_target_id, 'blocked', false));
    end if;
end
$$;

-- The caller's blocks, by user id.
create function hark_api.block_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_after uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_count integer;
    v_last uuid;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    perform hark_api.check_limit(p_limit, 1000);
    select coalesce(jsonb_agg(jsonb_build_object('user', hark_api.user_ref(page.blocked_id),
                                                 'created_at', page.created_at) order by page.blocked_id), '[]'::jsonb),
           count(*), max(page.blocked_id::text)::uuid
    into v_items, v_count, v_last
    from (
        select * from hark.blocks
        where tenant_id = p_tenant_id and blocker_id = p_user_id and (p_after is null or blocked_id > p_after)
        order by blocked_id
        limit p_limit
    ) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

create function hark_api.report_json(p_report hark.reports)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'id', p_report.id,
        'state', p_report.state,
        'reason', p_report.reason,
        'details', p_report.details,
        'reporter', hark_api.user_ref(p_report.reporter_id),
        'target_user', hark_api.user_ref(p_report.target_user_id),
        'room_id', p_report.room_id,
        'message_id', p_report.message_id,
        'message', p_report.message_snapshot,
        'action', p_report.action,
        'resolved_by', p_report.resolved_by,
        'resolved_at', p_report.resolved_at,
        'resolution_note', p_report.resolution_note,
        'created_at', p_report.created_at)
$$;

-- Tells the tenant's webhooks of a report (report.created, report.resolved).
create function hark_api.report_announce(p_report_id uuid, p_type text)
returns void
language plpgsql
as $$
declare
    v_current_tenant uuid := hark_api.current_tenant_id();
    v_report jsonb := (select hark_api.report_json(row(r.*)::hark.reports) from hark.reports r
                       where tenant_id = v_current_tenant and id = p_report_id);
begin
    perform hark_api.webhook_event(v_current_tenant, v_current_tenant, p_type, jsonb_build_object('report', v_report));
end
$$;

-- Reports a message (p_room_id and p_message_id; the reporter is a member of its room)
-- or a user (p_target_id), once per reporter and target (409 already_reported).
create function hark_api.report_create(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_report_id uuid,
    p_room_id uuid, p_message_id uuid, p_target_id uuid, p_reason text, p_details text)
returns jsonb
language plpgsql
as $$
declare
    v_message hark.messages;
    v_report hark.reports;
begin
    perform hark_api.enter_session(p_tenant_id, p_user_id, p_session_id);
    if p_reason is null or p_reason not in ('spam', 'harassment', 'inappropriate', 'other') then
        perform hark_api.fail(422, 'invalid_reason', 'The reason must be spam, harassment, inappropriate or other', 'reason');
    end if;
    if p_details is not null and char_length(p_details) > 1000 then
        perform hark_api.fail(422, 'invalid_details', 'The details must be at most 1000 characters', 'details');
    end if;
    if (p_message_id is null) = (p_target_id is null) or (p_message_id is null) <> (p_room_id is null) then
        perform hark_api.fail(422, 'invalid_target', 'Report a message (room_id and message_id) or a user (user_id)', 'user_id');
    end if;
    if p_message_id is not null then
        perform hark_api.require_readable(p_room_id);
        v_message := hark_api.find_message(p_room_id, p_message_id, false);
        if v_message.deleted_at is not null then
            perform hark_api.fail(409, 'message_deleted', 'The message has been deleted');
        end if;
        if v_message.sender_id = p_user_id then
            perform hark_api.fail(422, 'invalid_target', 'Nobody reports their own message', 'message_id');
        end if;
    elsif p_target_id = p_user_id then
        perform hark_api.fail(422, 'invalid_target', 'Nobody reports themselves', 'user_id');
    elsif not exists (select 1 from hark.users where tenant_id = p_tenant_id and id = p_target_id and deleted_at is null) then
        perform hark_api.fail(404, 'user_not_found', 'No such user', 'user_id');
    end if;
    insert into hark.reports (tenant_id, id, reporter_id, target_user_id, room_id, message_id, reason, details,
                              message_snapshot)
    values (p_tenant_id, p_report_id, p_user_id, coalesce(p_target_id, v_message.sender_id), p_room_id,
            p_message_id, p_reason, p_details,
            case when p_message_id is not null then hark_api.message_json(v_message, null) end)
    on conflict do nothing
    returning * into v_report;
    if v_report.id is null then
        perform hark_api.fail(409, 'already_reported', 'You have reported this already');
    end if;
    perform hark_api.report_announce(v_report.id, 'report.created');
    return hark_api.report_json(v_report);
end
$$;

-- The moderation queue (tenant moderators and above, API keys), newest first,
-- filtered by state, room and reported user.
create function hark_api.report_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_state text, p_room_id uuid, p_target_id uuid, p_before uuid, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_count integer;
    v_last uuid;
begin
    perform hark_api.enter_moderator(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.check_limit(p_limit, 200);
    if p_state is not null and p_state not in ('open', 'resolved') then
        perform hark_api.fail(422, 'invalid_state', 'The state must be open or resolved', 'state');
    end if;
    select coalesce(jsonb_agg(hark_api.report_json(row(page.*)::hark.reports) order by page.id desc), '[]'::jsonb),
           count(*), min(page.id::text)::uuid
    into v_items, v_count, v_last
    from (
        select * from hark.reports
        where tenant_id = p_tenant_id
          and (p_state is null or state = p_state)
          and (p_room_id is null or room_id = p_room_id)
          and (p_target_id is null or target_user_id = p_target_id)
          and (p_before is null or id < p_before)
        order by id desc
        limit p_limit
    ) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;

-- Resolves a report with an action, in one transaction: dismiss, delete the message,
-- mute or ban its target in the message's room, or ban the target from the tenant.
-- The other open reports of the same message (or user) are resolved with it.
create function hark_api.report_resolve(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_report_id uuid, p_action text, p_seconds integer, p_note text)
returns jsonb
language plpgsql
as $$
declare
    v_now timestamptz := now();
    v_report hark.reports;
    v_room hark.rooms;
begin
    perform hark_api.enter_moderator(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    if p_action is null or p_action not in ('dismiss', 'delete_message', 'mute', 'ban', 'ban_user') then
        perform hark_api.fail(422, 'invalid_action', 'The action must be dismiss, delete_message, mute, ban or ban_user', 'action');
    end if;
    if p_note is not null and char_length(p_note) > 500 then
        perform hark_api.fail(422, 'invalid_note', 'The note must be at most 500 characters', 'note');
    end if;
    select * into v_report from hark.reports where tenant_id = p_tenant_id and id = p_report_id;
    if v_report.id is null then
        perform hark_api.fail(404, 'report_not_found', 'No such report');
    end if;
    if v_report.room_id is not null then
        v_room := hark_api.lock_room(v_report.room_id);
    end if;
    select * into v_report from hark.reports where tenant_id = p_tenant_id and id = p_report_id for update;
    if v_report.state = 'resolved' then
        perform hark_api.fail(409, 'report_resolved', 'This report has been resolved already');
    end if;
    if p_action in ('delete_message', 'mute', 'ban') and v_report.message_id is null then
        perform hark_api.fail(422, 'invalid_action', 'This action needs a reported message (and its room)', 'action');
    end if;
    case p_action
        when 'delete_message' then
            perform hark_api.delete_message(v_report.room_id,
                hark_api.find_message(v_report.room_id, v_report.message_id, true));
        when 'mute', 'ban' then
            perform hark_api.restrict_user(v_room, v_report.target_user_id, p_action, p_note, p_seconds);
        when 'ban_user' then
            perform hark_api.ban_user(v_report.target_user_id, p_note, p_seconds);
        else
            null;
    end case;
    update hark.reports
    set state = 'resolved', action = p_action, resolved_by = p_user_id, resolved_at = v_now, resolution_note = p_note
    where tenant_id = p_tenant_id and state = 'open'
      and (id = p_report_id
           or (v_report.message_id is not null and message_id = v_report.message_id)
           or (v_report.message_id is null and message_id is null and target_user_id = v_report.target_user_id));
    perform hark_api.audit('report.resolve', 'report', p_report_id, v_report.room_id, p_note,
        jsonb_build_object('action', p_action, 'target_user_id', v_report.target_user_id,
                           'message_id', v_report.message_id));
    perform hark_api.report_announce(p_report_id, 'report.resolved');
    return (select hark_api.report_json(row(r.*)::hark.reports) from hark.reports r where tenant_id = p_tenant_id and id = p_report_id);
end
$$;

create function hark_api.word_filter_json(p_filter hark.word_filters)
returns jsonb
language sql
stable
as $$
    select jsonb_build_object('id', p_filter.id, 'term', p_filter.term, 'action', p_filter.action,
                              'created_by', p_filter.created_by, 'created_at', p_filter.created_at)
$$;

-- Adds a word filter (tenant owners and admins, API keys): at most 500 per tenant; a
-- term that folds to one already there is 409 filter_exists.
create function hark_api.word_filter_create(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_filter_id uuid,
    p_term text, p_action text)
returns jsonb
language plpgsql
as $$
declare
    v_filter hark.word_filters;
    v_folded text;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    v_folded := hark.fold_text(btrim(coalesce(p_term, '')));
    if char_length(coalesce(p_term, '')) > 100 or v_folded !~ '[^*[:space:]]' then
        perform hark_api.fail(422, 'invalid_term', 'The term must be 1 to 100 characters, not only * and spaces', 'term');
    end if;
    if p_action is null or p_action not in ('block', 'flag') then
        perform hark_api.fail(422, 'invalid_action', 'The action must be block or flag', 'action');
    end if;
    perform pg_advisory_xact_lock(hashtextextended('hark.word_filters/' || p_tenant_id, 0));
    if (select count(*) from hark.word_filters where tenant_id = p_tenant_id) >= 500 then
        perform hark_api.fail(422, 'too_many_filters', 'A tenant may have at most 500 word filters', 'term');
    end if;
    insert into hark.word_filters (tenant_id, id, term, folded, action, created_by)
    values (p_tenant_id, p_filter_id, btrim(p_term), v_folded, p_action, p_user_id)
    on conflict do nothing
    returning * into v_filter;
    if v_filter.id is null then
        perform hark_api.fail(409, 'filter_exists', 'A filter with this term exists', 'term');
    end if;
    perform hark_api.audit('word_filter.create', 'word_filter', p_filter_id, null, null,
        jsonb_build_object('term', v_filter.term, 'action', p_action));
    return hark_api.word_filter_json(v_filter);
end
$$;

-- The tenant's word filters (its moderators and above, API keys), by id.
create function hark_api.word_filter_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea)
returns jsonb
language plpgsql
as $$
begin
    perform hark_api.enter_moderator(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    return jsonb_build_object('items', coalesce((
        select jsonb_agg(hark_api.word_filter_json(row(f.*)::hark.word_filters) order by f.id)
        from hark.word_filters f where f.tenant_id = p_tenant_id), '[]'::jsonb));
end
$$;

create function hark_api.word_filter_delete(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea, p_filter_id uuid)
returns void
language plpgsql
as $$
declare
    v_filter hark.word_filters;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    delete from hark.word_filters where tenant_id = p_tenant_id and id = p_filter_id
    returning * into v_filter;
    if v_filter.id is null then
        perform hark_api.fail(404, 'filter_not_found', 'No such word filter');
    end if;
    perform hark_api.audit('word_filter.delete', 'word_filter', p_filter_id, null, null,
        jsonb_build_object('term', v_filter.term, 'action', v_filter.action));
end
$$;

-- The audit log (tenant owners and admins, API keys), newest first, filtered by
-- action, actor and target.
create function hark_api.audit_list(
    p_tenant_id uuid, p_user_id uuid, p_session_id uuid, p_key_hash bytea,
    p_action text, p_actor_id uuid, p_target_id uuid, p_before bigint, p_limit integer)
returns jsonb
language plpgsql
as $$
declare
    v_items jsonb;
    v_count integer;
    v_last bigint;
begin
    perform hark_api.enter_admin(p_tenant_id, p_user_id, p_session_id, p_key_hash);
    perform hark_api.check_limit(p_limit, 200);
    if p_before is not null and p_before < 1 then
        perform hark_api.fail(422, 'invalid_before', 'The cursor must be a positive number', 'before');
    end if;
    select coalesce(jsonb_agg(jsonb_build_object(
               'id', page.id, 'actor_id', page.actor_id, 'actor_key_id', page.actor_key_id,
               'action', page.action, 'target_type', page.target_type, 'target_id', page.target_id,
               'room_id', page.room_id, 'reason', page.reason, 'data', page.data, 'created_at', page.created_at)
               order by page.id desc), '[]'::jsonb),
           count(*), min(page.id)
    into v_items, v_count, v_last
    from (
        select * from hark.audit_log
        where tenant_id = p_tenant_id
          and (p_action is null or action = p_action)
          and (p_actor_id is null or actor_id = p_actor_id)
          and (p_target_id is null or target_id = p_target_id)
          and (p_before is null or id < p_before)
        order by id desc
        limit p_limit
    ) page;
    return jsonb_build_object('items', v_items, 'next_cursor', case when v_count = p_limit then v_last end);
end
$$;
