//! A real SMTP server (aiosmtpd, installed by `make setup` into `.tools/aiosmtpd`) on a free
//! loopback port, keeping every mail it accepts in a Maildir the test reads. Like a real server
//! for a mailbox that does not exist, it refuses for good (550) every recipient whose mailbox
//! name starts with `refused`.

use std::{
    io::Read,
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    process::{log_to, on_free_port, server_dir, spawn_tied, wait_until},
    Error,
};

/// An SMTP server of its own, listening on 127.0.0.1 only, without authentication or TLS.
pub struct SmtpServer {
    child: Child,
    port: u16,
    dir: TempDir,
    program: PathBuf,
    starts: u32,
}

/// One mail as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The whole message, headers and body, with `\n` line ends.
    pub raw: String,
}

impl Mail {
    /// The first header of that name (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\n\n").next().unwrap_or("");
        let head = head.replace("\n ", " ").replace("\n\t", " ");
        head.split('\n').find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The body after the headers.
    pub fn body(&self) -> &str {
        self.raw.split_once("\n\n").map_or("", |(_, body)| body)
    }

    /// The body's text, decoded from quoted-printable when the mail says it is.
    pub fn text(&self) -> String {
        let body = self.body();
        let quoted = self
            .header("content-transfer-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if !quoted {
            return body.to_owned();
        }
        let joined = body.replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'=', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The recipient (the `To` header).
    pub fn to(&self) -> String {
        self.header("to").unwrap_or_default()
    }
}

impl SmtpServer {
    /// Starts the server on a free port and waits until it greets.
    pub fn start() -> Result<Self, Error> {
        let program =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/aiosmtpd/bin/aiosmtpd");
        if !program.exists() {
            return Err(Error::Missing {
                program: "aiosmtpd",
                looked: program.display().to_string(),
                install: "scripts/setup.sh",
            });
        }
        on_free_port(|port| {
            let dir = server_dir("smtp")?;
            let child = spawn(&program, port, dir.path(), 1)?;
            Ok(Self {
                child,
                port,
                dir,
                program: program.clone(),
                starts: 1,
            })
        })
    }

    /// Stops the server (SIGKILL): an SMTP server that is down. Mails received stay readable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and Maildir after [`SmtpServer::stop`].
    pub fn start_again(&mut self) -> Result<(), Error> {
        self.starts += 1;
        self.child = spawn(&self.program, self.port, self.dir.path(), self.starts)?;
        Ok(())
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every mail received so far, oldest first.
    pub fn mails(&self) -> Result<Vec<Mail>, Error> {
        let mut found = Vec::new();
        for folder in ["new", "cur"] {
            let path = self.dir.path().join("mail").join(folder);
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries {
                let path = entry.map_err(Error::io("list the Maildir"))?.path();
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map_err(Error::io("read a mail's time"))?;
                let raw = std::fs::read_to_string(&path)
                    .map_err(Error::io("read a mail"))?
                    .replace("\r\n", "\n");
                found.push((modified, Mail { raw }));
            }
        }
        found.sort_by_key(|(modified, _)| *modified);
        Ok(found.into_iter().map(|(_, mail)| mail).collect())
    }
}

fn spawn(program: &Path, port: u16, dir: &Path, start: u32) -> Result<Child, Error> {
    let log = dir.join(format!("aiosmtpd-{start}.log"));
    let mut command = Command::new(program);
    command
        .args(["-n", "-l", &format!("127.0.0.1:{port}")])
        // aiosmtpd's Maildir, refusing for good the mailboxes named `refused…`.
        .args(["-c", "timedeal_smtp.RefusingMailbox"])
        .arg(dir.join("mail"))
        .env(
            "PYTHONPATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python"),
        );
    log_to(&mut command, &log)?;
    let mut child = spawn_tied(command, libc::SIGTERM)
        .map_err(Error::io(format!("start {}", program.display())))?;
    match wait_until(
        "aiosmtpd",
        &mut child,
        &log,
        Duration::from_secs(20),
        || greets(port),
    ) {
        Ok(()) => Ok(child),
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(error)
        }
    }
}

/// Whether the server says `220` to a new connection.
fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut greeting = [0u8; 3];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"220"
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
