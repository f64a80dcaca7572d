//! A PostgreSQL cluster of a test's own, which it may restart or serve over TLS only.

use std::{path::PathBuf, process::Command};

use super::database::{postgres_bin_dir, run_postgres_tool};

/// A PostgreSQL cluster of a test's own, which the test may restart.
pub struct OwnCluster {
    /// The data directory.
    data: PathBuf,
    /// The port.
    pub port: u16,
    /// The server's settings beyond port and address, which every restart keeps.
    options: String,
}

impl OwnCluster {
    /// Initialises and starts a cluster on `port` (best below 32768, the ephemeral
    /// range) under target/.
    pub fn start(port: u16) -> Self {
        Self::start_with(port, "-c fsync=off")
    }

    /// Like [`OwnCluster::start`], with the server started with `options`.
    pub fn start_with(port: u16, options: &str) -> Self {
        let data =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hark-own-postgres-{port}"));
        let data_str = data.to_str().expect("a UTF-8 path").to_owned();
        let _ = run_postgres_tool(
            &postgres_bin_dir().join("pg_ctl"),
            &["-D", &data_str, "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&data);
        hark::local_postgres::start(&data, port, options)
            .expect("a cluster of the test's own starts");
        Self {
            data,
            port,
            options: options.to_owned(),
        }
    }

    /// Initialises a cluster on `port` that accepts TCP connections only over TLS, with a
    /// server certificate for `localhost` signed by a CA made here; answers the cluster
    /// and the CA certificate's path.
    pub fn start_with_tls(port: u16) -> (Self, PathBuf) {
        let cluster = Self::start(port);
        cluster.pg_ctl("stop");
        let data = cluster.data.to_str().expect("a UTF-8 path").to_owned();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&cluster.data)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=hark test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            cluster.data.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        let conf = cluster.data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).expect("postgresql.conf");
        settings
            .push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, settings).expect("write postgresql.conf");
        let hba = cluster.data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "hostnossl all all 0.0.0.0/0 reject\nhostssl all all 127.0.0.1/32 trust\n{rules}"
            ),
        )
        .expect("write pg_hba.conf");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres", &data])
            .status();
        let _ = Command::new("chmod")
            .args(["600", &format!("{data}/server.key")])
            .status();
        cluster.pg_ctl("start");
        let ca = cluster.data.join("ca.crt");
        (cluster, ca)
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 {}",
            self.port, self.options
        );
        let data = self.data.to_str().expect("a UTF-8 path");
        let log = self.data.join("server.log");
        let output = run_postgres_tool(
            &postgres_bin_dir().join("pg_ctl"),
            &[
                "-D",
                data,
                "-o",
                &options,
                "-l",
                log.to_str().expect("a UTF-8 path"),
                "-m",
                "fast",
                "-w",
                action,
            ],
        );
        assert!(
            output.status.success(),
            "pg_ctl {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Restarts the server (fast shutdown: every connection is cut).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// A URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_owned();
        let _ = run_postgres_tool(
            &postgres_bin_dir().join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "stop"],
        );
    }
}
