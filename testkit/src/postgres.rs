//! A real PostgreSQL cluster in a temporary directory on a free loopback port.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root, `initdb` and the server run
//! as the `postgres` user that Debian's package creates, in a directory that user owns.

use std::{
    fs,
    os::unix::{fs::chown, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    process::{find_program, log_to, on_free_port, server_dir, spawn_tied, tail, wait_until},
    Error,
};

const INSTALL: &str = "apt-get install postgresql";

/// A PostgreSQL server of its own, listening on 127.0.0.1 only, with `trust` authentication for
/// the `postgres` superuser. Durability settings are off: its data lives as long as the test.
pub struct PostgresServer {
    child: Child,
    port: u16,
    dir: TempDir,
    bin: PathBuf,
    run_as: Option<RunAs>,
    durability: Durability,
}

/// The user a server process must run as: ourselves, or `postgres` when we are root.
#[derive(Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// Whether a commit waits until it is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: a commit returns once its WAL is flushed (for benchmarks).
    Durable,
    /// No flushing at all (for tests).
    Relaxed,
}

impl PostgresServer {
    /// Creates a cluster with `initdb`, starts it on a free port and waits until it accepts
    /// connections. Commits are not flushed to disk: tests want speed, not crash safety.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(Durability::Relaxed)
    }

    /// Like [`PostgresServer::start`], choosing whether commits wait for the disk.
    pub fn start_with(durability: Durability) -> Result<Self, Error> {
        let bin = bin_dir()?;
        let run_as = run_as()?;
        let dir = server_dir("postgres")?;
        if let Some(user) = run_as {
            chown(dir.path(), Some(user.uid), Some(user.gid))
                .map_err(Error::io("give the postgres user its directory"))?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("initdb.log");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .args(["--locale", "C"]);
        let status = as_user(&mut initdb, run_as, dir.path())
            .stdout(fs::File::create(&log).map_err(Error::io("create the initdb log"))?)
            .stderr(Stdio::piped())
            .output()
            .map_err(Error::io(format!("run {}", bin.join("initdb").display())))?;
        if !status.status.success() {
            return Err(Error::Failed {
                what: "initdb".into(),
                detail: format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&status.stderr).trim(),
                    tail(&log)
                ),
            });
        }

        let (child, port) = on_free_port(|port| {
            start_server(&bin, run_as, dir.path(), &data, port, durability)
                .map(|child| (child, port))
        })?;
        Ok(Self {
            child,
            port,
            dir,
            bin,
            run_as,
            durability,
        })
    }

    /// Stops the server at once (PostgreSQL's immediate shutdown: no checkpoint, as in a
    /// crash); committed data stays in its directory.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child, whose pid has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and data after [`PostgresServer::stop`].
    pub fn start_again(&mut self) -> Result<(), Error> {
        let data = self.dir.path().join("data");
        self.child = start_server(
            &self.bin,
            self.run_as,
            self.dir.path(),
            &data,
            self.port,
            self.durability,
        )?;
        Ok(())
    }

    /// Freezes the whole server (SIGSTOP to the postmaster, then to every backend): connections
    /// stay open and nothing answers, as with a hung host.
    pub fn freeze(&self) {
        self.signal_all(libc::SIGSTOP);
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) {
        self.signal_all(libc::SIGCONT);
    }

    fn signal_all(&self, signal: libc::c_int) {
        let postmaster = self.child.id() as libc::pid_t;
        // The postmaster first, so that it forks no new backend meanwhile.
        // SAFETY: signalling our own child and its children.
        unsafe { libc::kill(postmaster, signal) };
        for pid in children_of(postmaster) {
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// psql, from the server's own installation.
    pub fn psql() -> Result<PathBuf, Error> {
        Ok(bin_dir()?.join("psql"))
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// SQL that makes a deal's login role and its schema of the same name, as the operator does
    /// (the connection running it becomes a member, as the platform user is), for a storefront
    /// that connects as the deal with [`as_role`].
    pub fn deal_schema_sql(schema: &str) -> String {
        format!(
            "CREATE ROLE \"{schema}\" LOGIN NOSUPERUSER NOINHERIT; GRANT \"{schema}\" TO CURRENT_USER; \
             CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{schema}\";"
        )
    }

    /// The URL of another database on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `url` (of this server, which trusts loopback) logging in as `role` instead of `postgres`.
pub fn as_role(url: &str, role: &str) -> String {
    url.replacen("//postgres@", &format!("//{role}@"), 1)
}

impl PostgresServer {
    /// Creates a database (with `psql`, from the same installation) and returns its URL.
    pub fn create_database(&self, database: &str) -> Result<String, Error> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE \"{database}\""))
            .output()
            .map_err(Error::io(format!(
                "run {}",
                self.bin.join("psql").display()
            )))?;
        if !output.status.success() {
            return Err(Error::io(format!("create the database {database}"))(
                std::io::Error::other(String::from_utf8_lossy(&output.stderr).into_owned()),
            ));
        }
        Ok(self.url_for(database))
    }

    /// A new database on one server shared by the whole test process (started on first use,
    /// gone with the process), named `<prefix>_<n>`: each test its own, without a server each.
    pub fn shared_database(prefix: &str) -> Result<String, Error> {
        use std::sync::{
            atomic::{AtomicUsize, Ordering},
            OnceLock,
        };
        static SERVER: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = SERVER
            .get_or_init(|| PostgresServer::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| {
                Error::io("start the shared PostgreSQL")(std::io::Error::other(e.clone()))
            })?;
        server.create_database(&format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::SeqCst)))
    }

    /// The cluster's directory (data in `data/`, server log in `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn start_server(
    bin: &Path,
    run_as: Option<RunAs>,
    dir: &Path,
    data: &Path,
    port: u16,
    durability: Durability,
) -> Result<Child, Error> {
    let log = dir.join("postgres.log");
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "max_connections=200"]);
    if durability == Durability::Relaxed {
        command.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    log_to(&mut command, &log)?;
    as_user(&mut command, run_as, dir);
    // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down with it.
    let mut child = spawn_tied(command, libc::SIGQUIT).map_err(Error::io("start postgres"))?;
    let pg_isready = bin.join("pg_isready");
    let ready = wait_until(
        "postgres",
        &mut child,
        &log,
        Duration::from_secs(30),
        || {
            Command::new(&pg_isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success())
        },
    );
    match ready {
        Ok(()) => Ok(child),
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(error)
        }
    }
}

/// The processes whose parent is `parent`, from `/proc`.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command may hold spaces and parentheses: the fields follow the last ')'.
            let after = &stat[stat.rfind(')')? + 2..];
            let ppid: libc::pid_t = after.split(' ').nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

fn as_user<'c>(command: &'c mut Command, run_as: Option<RunAs>, dir: &Path) -> &'c mut Command {
    // The postgres user may not be allowed into our working directory.
    command.current_dir(dir);
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    command
}

/// Where `initdb` and `postgres` live: `$TIMEDEAL_PG_BIN`, the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`), or `PATH`.
fn bin_dir() -> Result<PathBuf, Error> {
    let chosen = match std::env::var_os("TIMEDEAL_PG_BIN") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => newest_debian_bin_dir().or_else(|| {
            find_program("postgres", &[]).and_then(|p| p.parent().map(Path::to_path_buf))
        }),
    };
    chosen
        .filter(|bin| {
            ["initdb", "postgres", "pg_isready"]
                .iter()
                .all(|p| bin.join(p).is_file())
        })
        .ok_or(Error::Missing {
            program: "PostgreSQL (initdb, postgres, pg_isready)",
            looked: "in $TIMEDEAL_PG_BIN, else /usr/lib/postgresql/*/bin, else on PATH".into(),
            install: INSTALL,
        })
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

fn run_as() -> Result<Option<RunAs>, Error> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam returns a pointer to static storage or null; it is read at once. Tests in
    // one process may race here, but they all look up the same user.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(Error::Missing {
            program: "the postgres user (PostgreSQL refuses to run as root)",
            looked: "in the user database".into(),
            install: INSTALL,
        });
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // A frozen server handles no signal until it goes on.
        self.thaw();
        // SAFETY: signalling our own child, whose pid has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let _ = self.child.wait();
    }
}
