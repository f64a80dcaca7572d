-- The search candidates of migration 0010, reading the tenant's setting once into a
-- value: a query that compares tenant_id with an expression is planned for any tenant,
-- and on Citus it then goes to every worker instead of the one that holds the tenant's
-- shard, which a call delegated to that worker may not do (sql/citus/delegate.sql).
-- The rule is unchanged. This file is an immutable migration.
create or replace function hark.search_candidates(
    p_rooms uuid[], p_words tsquery, p_like text, p_sender_id uuid, p_after timestamptz,
    p_before timestamptz, p_has_attachment boolean, p_kind text, p_limit integer)
returns table (message_id uuid, rank real)
language plpgsql
stable
security definer
set search_path = pg_catalog, hark
set plan_cache_mode = force_custom_plan
as $$
declare
    v_tenant_id uuid := nullif(current_setting('hark.tenant_id', true), '')::uuid;
begin
    return query
    select s.message_id, ts_rank_cd(s.words, coalesce(p_words, ''::tsquery))
    from hark.message_search s
    where s.tenant_id = v_tenant_id
      and s.room_id = any (p_rooms)
      and (s.words @@ p_words or s.folded like p_like)
      and (p_sender_id is null or s.sender_id = p_sender_id)
      and (p_after is null or s.created_at > p_after)
      and (p_before is null or s.created_at < p_before)
      and (p_has_attachment is null or s.has_attachment = p_has_attachment)
      and (p_kind is null or s.kind = p_kind)
    order by s.message_id desc
    limit p_limit;
end
$$;
