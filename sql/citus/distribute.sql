-- Spreads Hark's tables over a Citus cluster: run by `hark migrate` on a coordinator
-- (a database with the citus extension), after the migrations and before the
-- functions, and again whenever this file's text changes or a migration was applied.
-- Idempotent: every step looks at what is distributed already. A plain PostgreSQL
-- never runs it, and keeps the schema the migrations made.
--
-- Every table with a tenant_id is distributed by it, all in one colocation group, so
-- that a tenant's rows (and their foreign keys, which all carry tenant_id) are on one
-- worker. The tenants themselves and the quota defaults, which every node reads, are
-- reference tables (a copy on every node). The fleet's rate-limit buckets stay a
-- table of the coordinator: no tenant names them, and rate_take touches nothing else.

-- The search index, row by row: the rule of migration 0010's statement-level triggers
-- (a row per message that is not deleted; an edit re-indexes, a deletion or a purge
-- removes), written for one row. The row's shard and the index's are the same worker's
-- (colocated by tenant), so the trigger's writes stay on the node of the write.
create or replace function hark.message_search_row()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, hark
as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        if tg_op = 'UPDATE' and new.deleted_at is null and old.deleted_at is null
           and new.body is not distinct from old.body
           and (new.attachment is null) = (old.attachment is null) then
            return null;
        end if;
        delete from hark.message_search where tenant_id = old.tenant_id and message_id = old.id;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.deleted_at is null then
        insert into hark.message_search
            (tenant_id, message_id, room_id, sender_id, kind, has_attachment, created_at, words, folded)
        values (new.tenant_id, new.id, new.room_id, new.sender_id, new.kind, new.attachment is not null,
                new.created_at, to_tsvector('simple'::regconfig, hark.search_text(new.body)),
                hark.fold_text(new.body));
    end if;
    return null;
end
$$;

-- Citus passes a DDL statement's text on to the workers, and a text of several
-- statements fails there: `hark migrate` sends this file as one, so the DDL that Citus
-- passes on runs through EXECUTE, one statement each.

-- Whether a table is spread over the workers already: distributed (by hash) or a
-- reference table, not merely a local table Citus has in its metadata.
create or replace function hark.is_spread(p_table regclass)
returns boolean
language sql
stable
as $$
    select exists (select from pg_dist_partition
                   where logicalrelid = p_table and (partmethod = 'h' or repmodel = 't'))
$$;

-- A number that orders the rows of a table across the nodes of the cluster: the
-- milliseconds since 2020 (clock_timestamp, read when the row is made), then the node's
-- group, then a counter of the node's. The identity columns of migrations 0005, 0008
-- and 0009 (a webhook's deliveries, the webhook outbox, the audit log) order their
-- rows, and a sequence cannot on Citus: each worker draws from a range of its own
-- (its group times 2^48), so rows a tenant's worker writes would sort after rows the
-- coordinator writes later, and after a tenant moves its new rows before its old
-- ones. This order is the clocks' order, which synchronised clocks keep to within
-- their skew; on one node it is the order the rows are made in.
create sequence if not exists hark.ordered_id_counter;
grant usage on sequence hark.ordered_id_counter to hark_app;
create or replace function hark.ordered_id(p_counter bigint)
returns bigint
language sql
volatile
set search_path = pg_catalog, hark
as $$
    select ((extract(epoch from clock_timestamp()) * 1000)::bigint - 1577836800000) << 22
           | ((select groupid from pg_dist_local_group)::bigint & 63) << 16
           | (p_counter & 65535)
$$;

do $$
declare
    v_index record;
    v_table regclass;
    v_first regclass;
    v_progress boolean;
begin
    -- Citus opens its connections to the workers as the current role, which is
    -- hark_app inside every API call (hark_api.enter): it must be able to log in
    -- there. It has no password, so where the workers ask for one it logs in only as
    -- pg_dist_authinfo says.
    -- Triggers on distributed tables run on the shards, in the transaction of the
    -- write; the one Hark keeps there writes to a colocated shard only.
    perform set_config('citus.enable_unsafe_triggers', 'on', true);
    execute 'alter role hark_app login';
    -- The API functions render rows with functions that read other tables (a
    -- message's reactions, a room's unread count), inside queries Citus sends to the
    -- shard of the tenant. Those reads run there, on the worker that holds every
    -- table's shard of that tenant (one colocation group), by local execution in the
    -- same transaction, which Citus allows only when told to: its warning is about
    -- reads that would reach other nodes, where a tenant's rows never are.
    execute 'alter role hark_app set citus.allow_nested_distributed_execution = on';

    -- Unique keys must hold the distribution column. The few that do not (a room's
    -- seqs, a sender's client ids, a key's secret) are unique per tenant anyway, since
    -- room and key ids are; they are rebuilt with tenant_id first, under their names,
    -- so that errors keep naming the same constraint.
    for v_index in
        select i.indexrelid::regclass as index, i.indrelid::regclass as tab,
               c.conname, c.contype, pg_get_indexdef(i.indexrelid) as definition
        from pg_index i
        join pg_class t on t.oid = i.indrelid
        left join pg_constraint c on c.conindid = i.indexrelid and c.contype in ('p', 'u')
        where t.relnamespace = 'hark'::regnamespace
          and i.indisunique
          and exists (select from pg_attribute a where a.attrelid = t.oid and a.attname = 'tenant_id')
          and not hark.is_spread(t.oid)
          and not (select bool_or(a.attname = 'tenant_id')
                   from pg_attribute a where a.attrelid = t.oid and a.attnum = any (i.indkey))
    loop
        if v_index.conname is not null then
            execute format('alter table %s drop constraint %I, add constraint %I %s (tenant_id, %s)',
                v_index.tab, v_index.conname, v_index.conname,
                case v_index.contype when 'p' then 'primary key' else 'unique' end,
                substring(pg_get_constraintdef((select oid from pg_constraint
                                                where conname = v_index.conname and conrelid = v_index.tab))
                          from '\((.*)\)'));
        else
            execute format('drop index %s', v_index.index);
            execute regexp_replace(v_index.definition, 'USING btree \(', 'USING btree (tenant_id, ');
        end if;
    end loop;

    -- Triggers with transition tables cannot be on distributed tables: the search
    -- index's statement-level triggers (migration 0010) give way to row-level ones
    -- that keep the same rule, created below once messages are distributed.
    drop trigger if exists messages_search_added on hark.messages;
    drop trigger if exists messages_search_changed on hark.messages;
    drop trigger if exists messages_search_removed on hark.messages;

    -- Tables referencing a reference table that is made one would become local tables
    -- of Citus's metadata, and those with identity columns could not be distributed
    -- from there: the foreign keys to tenants are set aside while the tables are
    -- distributed, and put back after (a distributed table may reference a reference
    -- table).
    if not hark.is_spread('hark.tenants') then
        create temporary table tenant_keys on commit drop as
            select conrelid::regclass as tab, conname, pg_get_constraintdef(oid) as definition
            from pg_constraint where contype = 'f' and confrelid = 'hark.tenants'::regclass;
        for v_index in select * from tenant_keys loop
            execute format('alter table %s drop constraint %I', v_index.tab, v_index.conname);
        end loop;
        perform create_reference_table('hark.tenants');
    end if;
    if not hark.is_spread('hark.quota_defaults') then
        perform create_reference_table('hark.quota_defaults');
    end if;

    -- Identity columns give way to hark.ordered_id (above), before their tables are
    -- distributed: Citus cannot alter them after. A table distributed already has none.
    for v_index in
        select a.attrelid::regclass as tab, a.attname
        from pg_attribute a join pg_class t on t.oid = a.attrelid
        where t.relnamespace = 'hark'::regnamespace and a.attidentity <> '' and not a.attisdropped
    loop
        execute format('alter table %s alter column %I drop identity', v_index.tab, v_index.attname);
        -- The counter is named in the default itself, so that Citus puts the sequence
        -- on every node along with the table.
        execute format('alter table %s alter column %I set default hark.ordered_id(nextval(%L))',
                       v_index.tab, v_index.attname, 'hark.ordered_id_counter');
    end loop;

    -- Distributed in the order of their foreign keys: a table after those it references.
    select p.logicalrelid into v_first from pg_dist_partition p
    where p.partmethod = 'h' and p.logicalrelid::text like 'hark.%' limit 1;
    loop
        v_progress := false;
        for v_table in
            select t.oid::regclass from pg_class t
            where t.relnamespace = 'hark'::regnamespace and t.relkind = 'r'
              and exists (select from pg_attribute a where a.attrelid = t.oid and a.attname = 'tenant_id')
              and not hark.is_spread(t.oid)
              and not exists (
                  select from pg_constraint f
                  where f.conrelid = t.oid and f.contype = 'f' and f.confrelid <> t.oid
                    and not hark.is_spread(f.confrelid))
            order by t.relname
        loop
            if v_first is null then
                perform create_distributed_table(v_table::text, 'tenant_id');
                v_first := v_table;
            else
                perform create_distributed_table(v_table::text, 'tenant_id', colocate_with := v_first::text);
            end if;
            v_progress := true;
        end loop;
        exit when not v_progress;
    end loop;
    if exists (
        select from pg_class t
        where t.relnamespace = 'hark'::regnamespace and t.relkind = 'r'
          and exists (select from pg_attribute a where a.attrelid = t.oid and a.attname = 'tenant_id')
          and not hark.is_spread(t.oid))
    then
        raise exception 'tables with tenant_id left undistributed: their foreign keys form a cycle';
    end if;
    if to_regclass('pg_temp.tenant_keys') is not null then
        for v_index in select * from tenant_keys loop
            execute format('alter table %s add constraint %I %s', v_index.tab, v_index.conname, v_index.definition);
        end loop;
    end if;

    -- The search index's row-level trigger (hark.message_search_row, above).
    execute 'drop trigger if exists messages_search_row on hark.messages';
    execute 'create trigger messages_search_row after insert or update or delete on hark.messages '
            'for each row execute function hark.message_search_row()';
end
$$;

