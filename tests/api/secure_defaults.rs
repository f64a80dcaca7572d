//! Safe unless told otherwise: what a server refuses to do with a missing or weak
//! setting.

use std::time::Duration;

use crate::helpers::fresh_database;

/// Runs `hark serve` against a database with the given signing secret (none when
/// `None`) and answers whether it exited, and what it said.
async fn serve_with_secret(secret: Option<&str>) -> (Option<std::process::ExitStatus>, String) {
    let database_url = fresh_database().await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hark"));
    command
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("HARK_BIND", "127.0.0.1:0")
        .env_remove("HARK_JWT_SECRET")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(secret) = secret {
        command.env("HARK_JWT_SECRET", secret);
    }
    let mut child = command.spawn().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .ok()
        .map(Result::unwrap);
    if status.is_none() {
        child.kill().await.unwrap();
    }
    let output = child.wait_with_output().await.unwrap();
    (status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn a_server_with_a_database_url_refuses_to_start_without_a_signing_secret() {
    let (status, said) = serve_with_secret(None).await;
    let status = status.expect("the server exits instead of serving");
    assert!(!status.success());
    assert!(
        said.contains("HARK_JWT_SECRET is not set") && said.contains("32 bytes"),
        "it says what to set: {said}"
    );
}

#[tokio::test]
async fn a_server_refuses_a_signing_secret_shorter_than_32_bytes() {
    let (status, said) = serve_with_secret(Some("too-short-a-secret")).await;
    let status = status.expect("the server exits instead of serving");
    assert!(!status.success());
    assert!(said.contains("32 bytes"), "it says why: {said}");
}
