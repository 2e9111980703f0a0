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

/// A `redis-server` of its own, without persistence, listening on 127.0.0.1 only.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<Self, Error> {
        let program =
            find_program("redis-server", &[PathBuf::from("/usr/bin")]).ok_or_else(|| {
                Error::Missing {
                    program: "redis-server",
                    looked: "on PATH and in /usr/bin".into(),
                    install: "apt-get install redis-server",
                }
            })?;
        on_free_port(|port| Self::start_on(&program, port))
    }

    fn start_on(program: &PathBuf, port: u16) -> Result<Self, Error> {
        let dir = server_dir("redis")?;
        let log = dir.path().join("redis.log");
        let mut command = Command::new(program);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path());
        log_to(&mut command, &log)?;
        let mut child = spawn_tied(command, libc::SIGTERM)
            .map_err(Error::io(format!("start {}", program.display())))?;
        let ready = wait_until(
            "redis-server",
            &mut child,
            &log,
            Duration::from_secs(10),
            || ping(port),
        );
        let server = Self { child, port, dir };
        ready.map(|()| server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its log is `redis.log` there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
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
