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

/// How a server keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persistence {
    None,
    /// An append-only file synced on every write.
    EveryWrite,
    /// An append-only file synced once a second, as the operator runs Redis: a node lost with
    /// its page cache brings it back up to a second behind.
    EverySecond,
}

/// A `redis-server` of its own, listening on 127.0.0.1 only: without persistence, or with an
/// append-only file (a pod with its volume), for restarts that keep data.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
    program: PathBuf,
    persistence: Persistence,
    starts: u32,
}

/// A copy of a server's data as it was at one moment, for [`RedisServer::roll_back`].
pub struct RedisCopy {
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(Persistence::None)
    }

    /// Like [`RedisServer::start`], keeping its data in an append-only file synced on every
    /// write, so [`RedisServer::restart`] brings it back as it was.
    pub fn start_persistent() -> Result<Self, Error> {
        Self::start_with(Persistence::EveryWrite)
    }

    /// As the operator runs Redis in a cluster: an append-only file synced once a second
    /// (`appendfsync everysec`). [`RedisServer::copy_data`] and [`RedisServer::roll_back`]
    /// play the loss of a node, which takes the last second's writes with its page cache.
    pub fn start_as_in_a_cluster() -> Result<Self, Error> {
        Self::start_with(Persistence::EverySecond)
    }

    fn start_with(persistence: Persistence) -> Result<Self, Error> {
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
            let child = spawn(&program, port, dir.path(), persistence, 1)?;
            Ok(Self {
                child,
                port,
                dir,
                program: program.clone(),
                persistence,
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
            self.persistence,
            self.starts,
        )?;
        Ok(())
    }

    /// Copies the server's data files as they are on disk now (what a node that died now would
    /// come back with, at most the last second behind what the server answered).
    pub fn copy_data(&self) -> Result<RedisCopy, Error> {
        let copy = tempfile::tempdir().map_err(Error::io("make a directory for Redis's copy"))?;
        copy_tree(self.dir.path(), copy.path())?;
        Ok(RedisCopy { dir: copy })
    }

    /// Kills the server and starts it again on `copy`: Redis comes back behind, with every
    /// write since the copy lost, as after a node loss with `appendfsync everysec`.
    pub fn roll_back(&mut self, copy: &RedisCopy) -> Result<(), Error> {
        self.kill();
        self.delete_data()?;
        copy_tree(copy.dir.path(), self.dir.path())?;
        self.start_again()
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
        self.delete_data()?;
        self.start_again()
    }

    /// Deletes everything but the logs from the server's directory.
    fn delete_data(&self) -> Result<(), Error> {
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
        Ok(())
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
    persistence: Persistence,
    start: u32,
) -> Result<Child, Error> {
    let log = dir.join(format!("redis-{start}.log"));
    let mut command = Command::new(program);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--daemonize", "no"]);
    match persistence {
        Persistence::None => command.args(["--appendonly", "no"]),
        Persistence::EveryWrite => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        Persistence::EverySecond => {
            command.args(["--appendonly", "yes", "--appendfsync", "everysec"])
        }
    };
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

/// Copies the data files (not the logs) of `from` into `to`, directories included.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(from).map_err(Error::io("list Redis's directory"))? {
        let path = entry.map_err(Error::io("list Redis's directory"))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            std::fs::create_dir_all(&target).map_err(Error::io("copy Redis's data"))?;
            copy_tree(&path, &target)?;
        } else if path.extension().is_none_or(|e| e != "log") {
            std::fs::copy(&path, &target).map_err(Error::io("copy Redis's data"))?;
        }
    }
    Ok(())
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
