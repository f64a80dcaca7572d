//! Row-level security as the application role sees it: with no tenant set, no row; with
//! tenant A set, A's rows only; no row of another tenant can be written.

use tokio_postgres::NoTls;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_application_role_sees_no_row_without_a_tenant_and_only_its_tenants_rows_with_one() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.register("acme", "bob").await;
    let globex = app.create_tenant("globex").await;

    let (mut client, connection) = tokio_postgres::connect(&app.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    let role = client
        .query_one(
            "select rolsuper, rolbypassrls, rolcanlogin,
                    (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where n.nspname in ('hark', 'hark_api') and pg_get_userbyid(c.relowner) = 'hark_app')
             from pg_roles where rolname = 'hark_app'",
            &[],
        )
        .await
        .unwrap();
    let (superuser, bypass, login, owned): (bool, bool, bool, i64) =
        (role.get(0), role.get(1), role.get(2), role.get(3));
    println!(
        "hark_app: superuser={superuser} bypassrls={bypass} login={login} owned_objects={owned}"
    );
    // On Citus it logs in: Citus connects to the workers as the current role.
    assert!(!superuser && !bypass && (!login || crate::helpers::on_citus()));
    assert_eq!(owned, 0);

    // Every table the application role may touch is under enabled and forced
    // row-level security. The one exception is a table it has no privilege on at all:
    // the search index, read only through hark.search_candidates (below).
    let unprotected = client
        .query(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'hark' and c.relkind = 'r' and not (c.relrowsecurity and c.relforcerowsecurity)
               and has_table_privilege('hark_app', c.oid, 'select, insert, update, delete, truncate, references')",
            &[],
        )
        .await
        .unwrap();
    let unprotected: Vec<String> = unprotected.iter().map(|row| row.get(0)).collect();
    println!(
        "tables hark_app may use without enabled and forced row-level security: {unprotected:?}"
    );
    assert!(unprotected.is_empty());

    client.batch_execute("set role hark_app").await.unwrap();
    let tables = ["tenants", "users", "sessions"];
    for table in tables {
        let count: i64 = client
            .query_one(&format!("select count(*) from hark.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        println!("as hark_app, no tenant set: {table} has {count} visible rows");
        assert_eq!(count, 0);
    }

    let transaction = client.transaction().await.unwrap();
    transaction
        .execute(
            "select set_config('hark.tenant_id', $1, true)",
            &[&acme.owner.tenant_id],
        )
        .await
        .unwrap();
    let users = transaction
        .query(
            "select username, tenant_id::text from hark.users order by username",
            &[],
        )
        .await
        .unwrap();
    let users: Vec<(String, String)> = users.iter().map(|row| (row.get(0), row.get(1))).collect();
    println!("as hark_app, tenant acme set: users visible = {users:?}");
    assert_eq!(users.len(), 2);
    assert!(
        users
            .iter()
            .all(|(_, tenant)| *tenant == acme.owner.tenant_id)
    );
    let tenants: Vec<String> = transaction
        .query("select slug from hark.tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    println!("as hark_app, tenant acme set: tenants visible = {tenants:?}");
    assert_eq!(tenants, vec!["acme".to_owned()]);

    let foreign_write = transaction
        .execute(
            "insert into hark.users (tenant_id, id, username, role) values ($1::text::uuid, gen_random_uuid(), 'mole', 'member')",
            &[&globex.owner.tenant_id],
        )
        .await;
    let error = foreign_write.expect_err("writing into another tenant fails");
    println!(
        "as hark_app, tenant acme set: inserting a globex user fails with: {}",
        error.as_db_error().unwrap().message()
    );
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    drop(transaction);

    let count: i64 = client
        .query_one("select count(*) from hark.users", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "as hark_app, after the transaction: {count} users visible (the setting was transaction-local)"
    );
    assert_eq!(count, 0);
}

#[tokio::test]
async fn the_search_index_is_reached_only_through_its_function_and_only_for_the_tenant_set() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let acme_room =
        crate::helpers::id_of(&app.create_room(&acme.owner.token, "a", "private").await);
    let globex_room =
        crate::helpers::id_of(&app.create_room(&globex.owner.token, "g", "private").await);
    app.send(&acme.owner.token, &acme_room, "shared secret word")
        .await;
    app.send(&globex.owner.token, &globex_room, "shared secret word")
        .await;

    let (mut client, connection) = tokio_postgres::connect(&app.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute("set role hark_app").await.unwrap();
    let direct = client
        .query("select count(*) from hark.message_search", &[])
        .await
        .expect_err("the application role cannot read the index itself");
    assert_eq!(
        direct.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute(
            "select set_config('hark.tenant_id', $1, true)",
            &[&acme.owner.tenant_id],
        )
        .await
        .unwrap();
    // Both tenants' rooms asked for: only the tenant set answers.
    let found: i64 = transaction
        .query_one(
            "select count(*) from hark.search_candidates(array[$1::text::uuid, $2::text::uuid],
                 to_tsquery('simple', 'secret:*'), null, null, null, null, null, null, 100)",
            &[&acme_room, &globex_room],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    drop(transaction);
    let without_tenant: i64 = client
        .query_one(
            "select count(*) from hark.search_candidates(array[$1::text::uuid, $2::text::uuid],
                 to_tsquery('simple', 'secret:*'), null, null, null, null, null, null, 100)",
            &[&acme_room, &globex_room],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(without_tenant, 0);
}

#[tokio::test]
async fn every_foreign_key_has_an_index_behind_it() {
    let app = spawn_app().await;
    let (client, connection) = tokio_postgres::connect(&app.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // An index serves a foreign key when its leading columns are the key's columns,
    // or the key's columns but tenant_id (ids are unique across tenants).
    let unindexed = client
        .query(
            "with keys as (
                 select c.conrelid, c.conname,
                        array(select unnest(c.conkey) order by 1) as columns,
                        array(select k from unnest(c.conkey) k
                              where k <> (select attnum from pg_attribute
                                          where attrelid = c.conrelid and attname = 'tenant_id')
                              order by 1) as without_tenant
                 from pg_constraint c
                 where c.contype = 'f' and c.connamespace = 'hark'::regnamespace)
             select keys.conrelid::regclass::text || '.' || keys.conname
             from keys
             where not exists (
                 select from pg_index i
                 where i.indrelid = keys.conrelid
                   and (array(select unnest((i.indkey::int2[])[0:cardinality(keys.columns) - 1]) order by 1)
                            = keys.columns
                        or array(select unnest((i.indkey::int2[])[0:cardinality(keys.without_tenant) - 1]) order by 1)
                            = keys.without_tenant))
             order by 1",
            &[],
        )
        .await
        .unwrap();
    let unindexed: Vec<String> = unindexed.iter().map(|row| row.get(0)).collect();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}
