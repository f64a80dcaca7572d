-- Retention per room. This file is an immutable migration.

-- How many days a room keeps messages (null: as its tenant does). A room's retention
-- can only be shorter than its tenant's: the shorter of the two applies.
alter table hark.rooms
    add column retention_days integer,
    add constraint rooms_retention_days check (retention_days between 1 and 36500);

-- Whether any room of the tenant ever had a retention of its own, so that the
-- retention sweep looks at the tenant's rooms even when the tenant keeps everything.
alter table hark.tenants
    add column room_retention boolean not null default false;
