//! `hark serve` as its own process, configured by environment variables as a
//! deployment would be: for signals, traces and kills.

use std::{process::Command, time::Duration};

use super::{app::TestApp, settings::TEST_SETTINGS};

/// A `hark serve` process on its own port and database, configured by environment
/// variables as a deployment would be; its standard error is piped to the test.
pub async fn spawn_process(
    database_url: &str,
    env: &[(&str, String)],
) -> (tokio::process::Child, TestApp) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    spawn_process_on(port, database_url, env).await
}

/// Like [`spawn_process`], on a given port (to restart an instance where it was).
pub async fn spawn_process_on(
    port: u16,
    database_url: &str,
    env: &[(&str, String)],
) -> (tokio::process::Child, TestApp) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hark"));
    command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("HARK_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in TEST_SETTINGS {
        command.env(name, value);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let server = command.spawn().unwrap();
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        database_url: database_url.to_owned(),
        client: reqwest::Client::new(),
        state: None,
    };
    for _ in 0..200 {
        if reqwest::get(format!("{}/readyz", app.address))
            .await
            .is_ok_and(|response| response.status() == 200)
        {
            return (server, app);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the hark process did not become ready");
}

/// Sends SIGTERM to a process and answers its exit status and standard error.
pub async fn terminate(server: tokio::process::Child) -> (std::process::ExitStatus, String) {
    let pid = server.id().unwrap().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(30), server.wait_with_output())
        .await
        .expect("the process exits within 30 s of SIGTERM")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
