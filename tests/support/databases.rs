//! Real databases for tests: a PostgreSQL and a MariaDB started from scratch in a
//! temporary directory on a free port (never the machine's own 5432/3306), and SQLite
//! files. Each waits until it answers a connection and is stopped on drop.
//!
//! Included with `#[path = "support/databases.rs"] mod databases;` by the tests that
//! need it, so the other test binaries don't compile sqlx code they don't use.
//!
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (the
//! Debian package creates it) in a directory handed to that user. MariaDB runs as
//! whoever we are (`--user=root` when that is root) with `--skip-grant-tables`: there
//! are no passwords to manage and nothing but this test can reach the port.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

/// How long a database may take to start before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL.
    Postgres,
    /// MariaDB (the MySQL protocol).
    MariaDb,
    /// SQLite (a file, no server).
    Sqlite,
}

impl Kind {
    /// The placeholder of the first query parameter.
    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Postgres => "$1",
            Kind::MariaDb | Kind::Sqlite => "?",
        }
    }
}

/// A database for one test, with a URL ferrocable accepts.
pub struct TestDatabase {
    /// Which database.
    pub kind: Kind,
    url: String,
    server: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user) && f.len() > 3)
                .then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .and_then(|(u, g)| Some((u?, g?)))
        .unwrap_or_else(|| {
            panic!("running as root, PostgreSQL needs a {user:?} user to run as (apt-get install postgresql creates it)")
        })
}

/// The newest `/usr/lib/postgresql/*/bin`, or the directory of `initdb` on PATH.
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&which.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb nor initdb on PATH): apt-get install postgresql"
    );
    Path::new(&path).parent().expect("a directory").to_owned()
}

fn run(cmd: &mut Command, what: &str, log: &Path) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    std::fs::write(log, [&out.stdout[..], &out.stderr[..]].concat()).expect("write log");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestDatabase {
    /// A fresh PostgreSQL cluster (`initdb`, trust auth) serving on 127.0.0.1:<free port>.
    pub async fn postgres() -> TestDatabase {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let run_as = is_root().then(|| user_ids("postgres"));
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown tempdir");
        }
        let as_user = |cmd: &mut Command| {
            if let Some((uid, gid)) = run_as {
                cmd.uid(uid).gid(gid);
            }
        };
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"])
            // initdb runs from our working directory, which postgres may not read.
            .current_dir(dir.path());
        as_user(&mut initdb);
        run(&mut initdb, "initdb", &dir.path().join("initdb.log"));

        let port = free_port();
        let log = dir.path().join("postgres.log");
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Throwaway data: no durability needed.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        as_user(&mut postgres);
        let server = postgres.spawn().expect("spawn postgres");
        let mut db = TestDatabase {
            kind: Kind::Postgres,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            server: Some(server),
            log,
            dir,
        };
        db.wait_ready().await;
        db
    }

    /// A fresh MariaDB (`mariadb-install-db`) serving on 127.0.0.1:<free port>, with an
    /// empty database `ferrocable_test`.
    pub async fn mariadb() -> TestDatabase {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let user: &[&str] = if is_root() { &["--user=root"] } else { &[] };
        // Throwaway data: no durability, small buffers.
        let fast = [
            "--innodb-flush-method=nosync",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
            "--skip-name-resolve",
        ];
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(user)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(fast);
        run(
            &mut install,
            "mariadb-install-db (apt-get install mariadb-server)",
            &dir.path().join("install.log"),
        );

        let port = free_port();
        let log = dir.path().join("mariadb.log");
        // /usr/sbin is not on every user's PATH.
        let mariadbd = ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mariadbd");
        let server = Command::new(mariadbd)
            .arg("--no-defaults")
            .args(user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--socket={}",
                dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg("--skip-grant-tables")
            .args(fast)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd (apt-get install mariadb-server)");
        let mut db = TestDatabase {
            kind: Kind::MariaDb,
            url: format!("mysql://root@127.0.0.1:{port}"),
            server: Some(server),
            log,
            dir,
        };
        db.wait_ready().await;
        db.execute("CREATE DATABASE ferrocable_test").await;
        db.url.push_str("/ferrocable_test");
        db
    }

    /// An empty SQLite database file.
    pub async fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.sqlite3");
        std::fs::File::create(&file).expect("create the database file");
        TestDatabase {
            kind: Kind::Sqlite,
            url: format!("sqlite:{}", file.display()),
            server: None,
            log: dir.path().join("none.log"),
            dir,
        }
    }

    /// The URL to give ferrocable.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Connects until it works: a started server takes a moment to listen. There is no
    /// event to wait on, so this polls, bounded by a deadline.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let err = match self.try_execute("SELECT 1").await {
                Ok(()) => return,
                Err(e) => e,
            };
            let server = self.server.as_mut().expect("a server");
            if let Some(status) = server.try_wait().expect("try_wait") {
                panic!(
                    "{:?} exited with {status} before answering; log:\n{}",
                    self.kind,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not answer within {START_TIMEOUT:?} ({err}); log:\n{}",
                self.kind,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                c.execute(sql).await?;
                c.close().await
            }
            Kind::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await?;
                c.execute(sql).await?;
                c.close().await
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                c.execute(sql).await?;
                c.close().await
            }
        }
    }

    /// Runs one statement on a new connection.
    pub async fn execute(&self, sql: &str) {
        self.try_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The reference app's users (`db/setup.rb`: 1 Alice, 2 Bob, 3 Carol, 4 Dave with
    /// a NULL avatar), in a `users` table whose id column has type `id_type`.
    pub async fn seed_reference_users(&self, id_type: &str) {
        self.execute(&format!(
            "CREATE TABLE users (id {id_type} PRIMARY KEY, name VARCHAR(255), avatar_url TEXT, email VARCHAR(255))"
        ))
        .await;
        for (id, name, avatar) in [
            (1, "Alice", "'https://example.test/avatars/alice.png'"),
            (2, "Bob", "'https://example.test/avatars/bob.png'"),
            (3, "Carol", "'https://example.test/avatars/carol.png'"),
            (4, "Dave", "NULL"),
        ] {
            self.execute(&format!(
                "INSERT INTO users (id, name, avatar_url, email) VALUES ({id}, '{name}', {avatar}, '{}@example.test')",
                name.to_lowercase()
            ))
            .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // PostgreSQL: SIGQUIT is its immediate shutdown, which also frees its shared
        // memory (SIGKILL would leave that behind). MariaDB's data is thrown away, so
        // SIGKILL is fine.
        let signal = match self.kind {
            Kind::Postgres => "-QUIT",
            _ => "-KILL",
        };
        let _ = Command::new("kill")
            .args([signal, &server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match server.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = server.kill();
                    let _ = server.wait();
                    return;
                }
                // Waiting for a child's exit has no event to await here (Drop is sync).
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
