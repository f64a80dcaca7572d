//! TLS to Postgres: a cluster that refuses unencrypted connections, and an instance
//! that verifies its certificate against a CA file.

use crate::helpers::{OwnCluster, spawn_on};

#[tokio::test]
async fn an_instance_serves_through_a_postgres_that_requires_tls() {
    let (cluster, ca) = OwnCluster::start_with_tls(25_450);
    let ca = ca.to_str().unwrap().to_owned();

    // Without TLS the server refuses the connection.
    let plain = hark::db::ensure_database_exists(
        &format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            cluster.port
        ),
        None,
    )
    .await;
    let refusal = format!("{:#}", plain.expect_err("a plain connection is refused"));
    println!("sslmode=disable: {refusal}");
    assert!(
        refusal.contains("pg_hba.conf rejects connection"),
        "{refusal}"
    );

    // With verify-full against the test's CA, and the host name in the certificate.
    let url = format!(
        "postgres://postgres@localhost:{}/hark_tls?sslmode=verify-full",
        cluster.port
    );
    let app = spawn_on(url.clone(), |config| {
        config.database_ca_file = Some(ca.clone())
    })
    .await;
    let tenant = app.create_tenant("secure").await;
    let me = app
        .get("/v1/users/me", &tenant.owner.token)
        .await
        .expect(200);
    assert_eq!(me["username"], "owner");

    // The instance's connections are encrypted.
    let target = hark::db::tls::target(&url, Some(&ca)).unwrap();
    let (client, connection) = target.config.connect(target.tls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "select count(*) filter (where s.ssl), count(*) from pg_stat_ssl s join pg_stat_activity a using (pid)
             where a.datname = 'hark_tls'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    println!("connections to hark_tls: {encrypted} of {all} encrypted");
    assert_eq!(encrypted, all);
    assert!(all >= 2, "the pool and the LISTEN connection at least");

    // A server whose certificate names another host fails verify-full; verify-ca only
    // checks the chain and passes.
    let other_name = format!(
        "postgres://postgres@not-the-server:{}/hark_tls?hostaddr=127.0.0.1&sslmode=verify-full",
        cluster.port
    );
    let refusal = format!(
        "{:#}",
        hark::db::ensure_database_exists(&other_name, Some(&ca))
            .await
            .unwrap_err()
    );
    println!("verify-full against another name: {refusal}");
    assert!(refusal.to_lowercase().contains("certificate"), "{refusal}");
    let ca_only = format!(
        "postgres://postgres@not-the-server:{}/hark_tls?hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}",
        cluster.port
    );
    hark::db::ensure_database_exists(&ca_only, None)
        .await
        .expect("verify-ca accepts the chain");
}
