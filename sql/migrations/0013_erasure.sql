-- Erasing a user's personal data. This file is an immutable migration.

-- What erasing a user does to their messages, as the tenant chose: 'anonymise' keeps
-- them under a sender with no name left, 'delete' makes them tombstones (body and
-- attachment gone, seq kept, so every room's history stays gapless).
alter table hark.tenants
    add column erasure_mode text not null default 'anonymise',
    add constraint tenants_erasure_mode check (erasure_mode in ('anonymise', 'delete'));

-- When a user was erased: the row keeps its id (messages keep their sender) and
-- nothing that names the person.
alter table hark.users add column erased_at timestamptz;
