-- Puts Hark's functions on every node of a Citus cluster and delegates the calls that
-- name a tenant to the worker holding that tenant: run by `hark migrate` on a
-- coordinator, in the transaction that re-creates the functions, right after them.
-- A plain PostgreSQL never runs it.
--
-- A function whose first parameter is p_tenant_id is distributed by it, colocated with
-- the tenant tables, with force_delegation: the server calls every function in a
-- transaction block of its own (src/db/mod.rs), and Citus delegates a call made in one
-- only when told to. Such a call runs whole on the tenant's worker, its reads and
-- writes are local there, and the notifications it sends leave from that worker,
-- where every instance listens (src/realtime/cluster.rs). Citus holds a delegated call
-- to its tenant: a query inside it that reaches another tenant's shard fails ("queries
-- must filter by the distribution argument"), which the functions' convention of naming
-- tenant_id = p_tenant_id in every query keeps from happening.
--
-- Only the calls the server makes are delegated, the functions no other function
-- calls: a call from inside a function that runs on the coordinator stays there, and
-- one inside a delegated call runs where that call does.
--
-- Two kinds of calls stay on the coordinator. Calls that name no tenant (the sweeps,
-- logins by slug, the operator's lists) go over every tenant. And calls that write or
-- lock a row of a table that is not spread by tenant (the tenants and the quota
-- defaults, a copy of which is on every node, and the coordinator's rate buckets), or
-- that call a function that does: such a write reaches every node, and Citus refuses
-- anything inside a delegated call that would leave its worker.
-- They are found from the functions' text, so that a new function falls on the right
-- side by what it does.
do $$
declare
    v_function record;
begin
    for v_function in
        with recursive
            fns as (
                select p.oid, p.proname, p.prosrc,
                       p.pronargs > 0 and p.proargtypes[0] = 'uuid'::regtype
                       and coalesce(p.proargnames[1] = 'p_tenant_id', false) as by_tenant
                from pg_proc p
                where p.pronamespace = 'hark_api'::regnamespace
            ),
            unspread as (
                select c.relname from pg_class c
                where c.relnamespace = 'hark'::regnamespace and c.relkind = 'r'
                  and not exists (select from pg_dist_partition d
                                  where d.logicalrelid = c.oid and d.partmethod = 'h')
            ),
            coordinator_only(oid, proname) as (
                select f.oid, f.proname from fns f
                where exists (
                    select from unspread u
                    where f.prosrc ~* ('(insert\s+into|update|delete\s+from)\s+hark\.' || u.relname || '\M')
                       or f.prosrc ~* ('from\s+hark\.' || u.relname || '\M[^;]*\sfor\s+(no\s+key\s+update|update|share|key\s+share)'))
                union
                select f.oid, f.proname from fns f, coordinator_only c
                where f.prosrc ~* ('hark_api\.' || c.proname || '\s*\(')
            )
        select f.oid::regprocedure as signature,
               f.by_tenant
               and not exists (select from coordinator_only c where c.oid = f.oid)
               and not exists (select from fns g
                               where g.oid <> f.oid and g.prosrc ~* ('hark_api\.' || f.proname || '\s*\('))
                   as delegated
        from fns f
        order by f.oid
    loop
        if v_function.delegated then
            perform create_distributed_function(
                v_function.signature, 'p_tenant_id',
                colocate_with := 'hark.rooms', force_delegation := true);
        else
            perform create_distributed_function(v_function.signature);
        end if;
    end loop;
end
$$;
