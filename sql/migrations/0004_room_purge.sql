-- Deleting a room is bounded work. This file is an immutable migration.
--
-- hark_api.room_delete marks the room deleted, which takes it out of the application's
-- sight at once (the row-level security policy below), frees its invite code and
-- direct-room key, and removes its members; its messages and events, which can be
-- millions of rows, are then deleted in batches of bounded size by
-- hark_api.purge_rooms, one short transaction each, so that no delete holds locks or
-- the write path for long.
alter table hark.rooms add column deleted_at timestamptz;

alter table hark.rooms drop constraint rooms_direct_key_present;
alter table hark.rooms add constraint rooms_direct_key_present
    check ((kind = 'direct') = (direct_key is not null) or deleted_at is not null);

create index rooms_deleted_idx on hark.rooms (deleted_at) where deleted_at is not null;

-- A deleted room is visible only to the purge (the transaction-local setting
-- hark.purging, set by hark_api.purge_rooms alone), in any tenant, so that it can find
-- the rooms left to purge.
drop policy tenant_isolation on hark.rooms;
create policy tenant_isolation on hark.rooms
    using ((tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid and deleted_at is null)
           or (deleted_at is not null and current_setting('hark.purging', true) = 'on'))
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid);
