//! A service under test (a binary of this workspace that serves HTTP), started like the servers:
//! on a free loopback port, tied to the test process, logging to its own directory, and ready
//! once `GET /readyz` answers 200.

use std::{
    ffi::OsString,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    process::{log_to, on_free_port, server_dir, spawn_tied, tail, wait_until},
    Error,
};

pub struct Service {
    child: Child,
    port: u16,
    dir: TempDir,
    log: PathBuf,
}

impl Service {
    /// Starts `program` with `args`, then `--listen 127.0.0.1:<port>`, and the environment
    /// `envs`; waits up to 60 s for it to be ready.
    pub fn start(
        program: &Path,
        args: &[OsString],
        envs: &[(&str, OsString)],
    ) -> Result<Self, Error> {
        on_free_port(|port| {
            let dir = server_dir("service")?;
            let log = dir.path().join("service.log");
            let mut command = Command::new(program);
            command
                .args(args)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .current_dir(dir.path());
            for (key, value) in envs {
                command.env(key, value);
            }
            log_to(&mut command, &log)?;
            let mut child = spawn_tied(command, libc::SIGKILL)
                .map_err(Error::io(format!("start {}", program.display())))?;
            let name = program.file_name().unwrap_or_default().to_string_lossy();
            let ready = wait_until(&name, &mut child, &log, Duration::from_secs(60), || {
                http_status(port, "/readyz") == Some(200)
            });
            let service = Self {
                child,
                port,
                dir,
                log,
            };
            ready.map(|()| service)
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the service with SIGKILL: whatever it was doing stops mid-way.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the service logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// The status code of a plain `GET`, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
