-- An index behind every foreign key. This file is an immutable migration.
--
-- Deleting or changing a referenced row makes PostgreSQL look for the rows that refer
-- to it; without an index on the referring columns that is a scan of the whole table
-- under the lock the delete holds (deleting a room scanned every message of the
-- table for replies to its messages). A test reads the catalog and fails on a
-- foreign key without one.
create index api_keys_created_by_idx on hark.api_keys (tenant_id, created_by);
create index rooms_created_by_idx on hark.rooms (tenant_id, created_by);
create index messages_sender_idx on hark.messages (tenant_id, sender_id);
create index messages_reply_to_idx on hark.messages (tenant_id, reply_to_id) where reply_to_id is not null;
create index reactions_user_idx on hark.reactions (tenant_id, user_id);
