//! A private PgBouncer in transaction mode, in front of the test server, as managed
//! Postgres offerings put one in front of the database. Started once per test process
//! (Debian's `pgbouncer` package; installed here when missing and we are root, as
//! `.ci/run` does), stopped when the process ends.

use std::{collections::BTreeMap, path::PathBuf, process::Command, time::Duration};

use hark::config::Config;
use tokio::sync::Mutex;
use tokio_postgres::NoTls;

/// Server connections PgBouncer keeps per database: fewer than a test instance's pool
/// (8), so that the pool's connections share server connections between transactions.
pub const SERVER_CONNECTIONS: usize = 4;

/// The running PgBouncers' ports, one for each server (`host:port`) tests use.
static PORTS: Mutex<BTreeMap<String, u16>> = Mutex::const_new(BTreeMap::new());

/// Whether the tests were asked to run every instance's pool through PgBouncer
/// (`HARK_TEST_POOLER=pgbouncer`), as CI does for the real-time tests.
pub fn requested() -> bool {
    std::env::var("HARK_TEST_POOLER").is_ok_and(|value| value == "pgbouncer")
}

/// `database_url` (a URL of the test server) as reached through PgBouncer.
async fn url_through(database_url: &str) -> String {
    let (host, server_port) = host_and_port(database_url);
    let mut ports = PORTS.lock().await;
    let port = match ports.get(&format!("{host}:{server_port}")) {
        Some(port) => *port,
        None => {
            let port = start(&host, server_port).await;
            ports.insert(format!("{host}:{server_port}"), port);
            port
        }
    };
    let (_, database) = database_url.rsplit_once('/').expect("a database name");
    format!("postgres://postgres@127.0.0.1:{port}/{database}")
}

fn binary() -> PathBuf {
    let found = || {
        ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
    };
    if let Some(path) = found() {
        return path;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
    if root {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "pgbouncer"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    found().expect("PgBouncer is installed (apt-get install pgbouncer; .ci/run does it)")
}

/// Host and port of the server a URL points at.
fn host_and_port(url: &str) -> (String, u16) {
    let authority = url
        .split_once('@')
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .expect("a host");
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "5432"));
    (host.to_owned(), port.parse().expect("a port number"))
}

async fn start(host: &str, server_port: u16) -> u16 {
    let binary = binary();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("an address").port()
    };
    let dir = std::env::temp_dir().join(format!("hark-pgbouncer-{port}"));
    std::fs::create_dir_all(&dir).expect("a directory for PgBouncer");
    let config = dir.join("pgbouncer.ini");
    let auth = dir.join("userlist.txt");
    std::fs::write(&auth, "\"postgres\" \"\"\n").expect("write userlist.txt");
    std::fs::write(
        &config,
        format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {auth}\npool_mode = transaction\n\
             default_pool_size = {SERVER_CONNECTIONS}\nmax_client_conn = 2000\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {log}\npidfile = {pid}\n",
            auth = auth.display(),
            log = dir.join("pgbouncer.log").display(),
            pid = dir.join("pgbouncer.pid").display(),
        ),
    )
    .expect("write pgbouncer.ini");
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status();
    let mut command = if Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
    {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&binary);
        command
    } else {
        Command::new(&binary)
    };
    let status = command
        .arg("-d")
        .arg(&config)
        .status()
        .expect("PgBouncer starts");
    assert!(status.success(), "PgBouncer did not start: see {config:?}");
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    for _ in 0..100 {
        if tokio_postgres::connect(&url, NoTls).await.is_ok() {
            stop_at_exit(dir.join("pgbouncer.pid"));
            return port;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("PgBouncer does not answer on port {port}");
}

/// Stops the daemon when the test process ends (it outlives the process otherwise),
/// from a shell that watches the test process.
fn stop_at_exit(pid_file: PathBuf) {
    let parent = std::process::id();
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill {}",
            pid.trim()
        ))
        .spawn();
}

/// A change of configuration that points an instance's pool at PgBouncer, and its
/// LISTEN connection and migrations at the server directly, as docs/deploy.md tells
/// operators to.
pub async fn behind_pgbouncer(database_url: &str) -> impl FnOnce(&mut Config) + use<> {
    let pooled = url_through(database_url).await;
    let direct = database_url.to_owned();
    move |config| {
        config.database_url = Some(pooled);
        config.listen_database_url = Some(direct.clone());
        config.migration_database_url = Some(direct);
    }
}
