-- Rate limits shared by the fleet: one token bucket per limit and key, from which each
-- instance leases a few tokens at a time (hark_api.rate_take). This file is an
-- immutable migration.

-- A bucket holds `tokens` as of `updated_at`, refilled at the caller's rate up to its
-- burst, `granted` is what the last lease took (for that lease's answer), and
-- `full_at` is when it is full again, after which the row means nothing (a
-- missing bucket is a full one) and is forgotten. The table is unlogged: a crash
-- empties it, which only gives every key a full bucket again, and no send pays for
-- the write-ahead log of its limit. It holds no tenant's data (keys are user ids,
-- client addresses and digests of logins); the serving role has no privilege on it
-- and reaches it only through hark_api.rate_take.
create unlogged table hark.rate_buckets (
    limit_name text not null,
    key bytea not null,
    tokens double precision not null,
    granted integer not null,
    updated_at timestamptz not null,
    full_at timestamptz not null,
    primary key (limit_name, key)
);
create index rate_buckets_full_at_idx on hark.rate_buckets (full_at);
revoke all on hark.rate_buckets from hark_app;
