-- Rate limits shared by the fleet: each instance leases tokens of a key's bucket here
-- and spends them from memory (src/limits.rs), so a limit holds for the fleet at the
-- cost of one call per lease, not per request.

-- A lease of up to p_want whole tokens from a bucket that held p_tokens at p_updated,
-- refilled at p_rate per second up to p_burst: the tokens left after it at p_now, the
-- tokens granted, and when the bucket is full again. A negative p_want gives tokens
-- back, never beyond the burst.
create function hark_api.rate_lease(
    p_tokens double precision, p_updated timestamptz, p_now timestamptz,
    p_burst double precision, p_rate double precision, p_want integer,
    out tokens double precision, out granted integer, out full_at timestamptz)
language sql
immutable
as $$
    select least(p_burst, refilled - lease), lease::integer,
           p_now + make_interval(secs => greatest(p_burst - refilled + lease, 0) / p_rate)
    from (select least(p_burst, p_tokens + extract(epoch from p_now - p_updated)::double precision * p_rate)
                 as refilled) bucket,
         lateral (select least(p_want, floor(refilled)) as lease) taken
$$;

-- Takes up to p_want whole tokens of the bucket of p_key under p_limit (p_burst tokens
-- at most, refilled at p_rate per second; a bucket never seen is full), or gives
-- -p_want back when it is negative (an attempt that succeeded), in one
-- statement under the row's lock, so that the fleet's concurrent leases never take
-- more than the bucket holds. Answers {granted, remaining, retry_after_ms,
-- reset_after_ms}: the tokens leased, the whole tokens left, how long until one is
-- back (when none was granted) and until the bucket is full. It runs as the table's
-- owner (SECURITY DEFINER): the serving role has no privilege on the buckets.
create function hark_api.rate_take(
    p_limit text, p_key bytea, p_burst double precision, p_rate double precision, p_want integer)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_now timestamptz := clock_timestamp();
    v_tokens double precision;
    v_granted integer;
begin
    insert into hark.rate_buckets as b (limit_name, key, tokens, granted, updated_at, full_at)
    select p_limit, p_key, lease.tokens, lease.granted, v_now, lease.full_at
    from hark_api.rate_lease(p_burst, v_now, v_now, p_burst, p_rate, p_want) lease
    on conflict (limit_name, key) do update
        set (tokens, granted, full_at) =
                (select lease.tokens, lease.granted, lease.full_at
                 from hark_api.rate_lease(b.tokens, b.updated_at, v_now, p_burst, p_rate, p_want) lease),
            updated_at = v_now
    returning b.tokens, b.granted into v_tokens, v_granted;
    return jsonb_build_object(
        'granted', v_granted,
        'remaining', floor(v_tokens)::integer,
        'retry_after_ms', case when v_granted = 0 then ceil((1 - v_tokens) / p_rate * 1000)::bigint end,
        'reset_after_ms', ceil((p_burst - v_tokens) / p_rate * 1000)::bigint);
end
$$;
revoke all on function hark_api.rate_take(text, bytea, double precision, double precision, integer) from public;
grant execute on function hark_api.rate_take(text, bytea, double precision, double precision, integer) to hark_app;

-- Forgets up to p_batch buckets that are full again (a missing bucket is a full one);
-- answers how many (a JSON number). Run by every instance's background loop.
create function hark_api.rate_forget(p_batch integer)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_count integer;
begin
    delete from hark.rate_buckets
    where ctid = any (array(select ctid from hark.rate_buckets
                            where full_at < clock_timestamp()
                            limit p_batch
                            for update skip locked));
    get diagnostics v_count = row_count;
    return to_jsonb(v_count);
end
$$;
