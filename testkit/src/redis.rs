//! A real `redis-server` on a free loopback port.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    process::{find_program, log_to, on_free_port, server_dir, spawn_tied, wait_until},
    Error,
};

/// A `redis-server` of its own, listening on 127.0.0.1 only: without persistence, or with an
/// append-only file synced on every write (a pod with its volume), for restarts that keep data.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
    program: PathBuf,
    persistent: bool,
    starts: u32,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(false)
    }

    /// Like [`RedisServer::start`], keeping its data in an append-only file synced on every
    /// write, so [`RedisServer::restart`] brings it back as it was.
    pub fn start_persistent() -> Result<Self, Error> {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Result<Self, Error> {
        let program =
            find_program("redis-server", &[PathBuf::from("/usr/bin")]).ok_or_else(|| {
                Error::Missing {
                    program: "redis-server",
                    looked: "on PATH and in /usr/bin".into(),
                    install: "apt-get install redis-server",
                }
            })?;
        on_free_port(|port| {
            let dir = server_dir("redis")?;
            let child = spawn(&program, port, dir.path(), persistent, 1)?;
            Ok(Self {
                child,
                port,
                dir,
                program: program.clone(),
                persistent,
                starts: 1,
            })
        })
    }

    /// Kills the server with SIGKILL, as a node losing a pod would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port after [`RedisServer::kill`], with whatever
    /// its directory holds.
    pub fn start_again(&mut self) -> Result<(), Error> {
        self.starts += 1;
        self.child = spawn(
            &self.program,
            self.port,
            self.dir.path(),
            self.persistent,
            self.starts,
        )?;
        Ok(())
    }

    /// Kills the server and starts it again on the same port: with its data when it is
    /// persistent, empty otherwise.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.start_again()
    }

    /// Kills the server, deletes its data and starts it again empty: a pod replaced without
    /// its volume.
    pub fn restart_empty(&mut self) -> Result<(), Error> {
        self.kill();
        for entry in
            std::fs::read_dir(self.dir.path()).map_err(Error::io("list Redis's directory"))?
        {
            let path = entry.map_err(Error::io("list Redis's directory"))?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(Error::io("delete Redis's data"))?;
            } else if path.extension().is_none_or(|e| e != "log") {
                std::fs::remove_file(&path).map_err(Error::io("delete Redis's data"))?;
            }
        }
        self.start_again()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its logs are `redis-<n>.log` there, one per start).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn spawn(
    program: &PathBuf,
    port: u16,
    dir: &std::path::Path,
    persistent: bool,
    start: u32,
) -> Result<Child, Error> {
    let log = dir.join(format!("redis-{start}.log"));
    let mut command = Command::new(program);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--daemonize", "no"]);
    if persistent {
        command.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    command.arg("--dir").arg(dir);
    log_to(&mut command, &log)?;
    let mut child = spawn_tied(command, libc::SIGTERM)
        .map_err(Error::io(format!("start {}", program.display())))?;
    match wait_until(
        "redis-server",
        &mut child,
        &log,
        Duration::from_secs(10),
        || ping(port),
    ) {
        Ok(()) => Ok(child),
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(error)
        }
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
