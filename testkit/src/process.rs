//! Spawning servers that cannot outlive the test process, and the ports and directories they use.

use std::{
    fs,
    io::Read,
    net::{Ipv4Addr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{mpsc, Mutex, Once, OnceLock},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::Error;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` so that the kernel kills it when the test process dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, and the test harness
/// runs every test on a short-lived thread; so every server is forked by one spawner thread that
/// lives as long as the process.
pub(crate) fn spawn_tied(
    mut command: Command,
    death_signal: libc::c_int,
) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply))
        .expect("the spawner thread is alive");
    answer.recv().expect("the spawner thread answers")
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("find a free port"))?
        .port())
}

/// Sends a server's output to a new log file in its directory, with no input.
pub(crate) fn log_to(command: &mut Command, log: &Path) -> Result<(), Error> {
    let file = fs::File::create(log).map_err(Error::io(format!("create {}", log.display())))?;
    let copy = file
        .try_clone()
        .map_err(Error::io(format!("open {}", log.display())))?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(copy)
        .stderr(file);
    Ok(())
}

/// Runs `start` on a free port, and again on another one when the port was taken in between
/// (the server then fails to bind).
pub(crate) fn on_free_port<T>(mut start: impl FnMut(u16) -> Result<T, Error>) -> Result<T, Error> {
    let mut last = None;
    for _ in 0..3 {
        match start(free_port()?) {
            Ok(server) => return Ok(server),
            Err(error) => last = Some(error),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Polls `ready` until it answers true, the child exits, or `limit` passes.
pub(crate) fn wait_until(
    what: &str,
    child: &mut Child,
    log: &Path,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Failed {
                what: what.into(),
                detail: format!("exited with {status}; its log ends with:\n{}", tail(log)),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Failed {
                what: what.into(),
                detail: format!(
                    "not ready after {limit:?}; its log ends with:\n{}",
                    tail(log)
                ),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn tail(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(log) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Finds a program on `PATH` or in the given extra directories.
pub(crate) fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

const OWNER_FILE: &str = "timedeal-testkit.owner";
const DIR_PREFIX: &str = "timedeal-testkit-";

/// A temporary directory for one server, marked with the test process's pid so that a later run
/// can remove it if this process dies without cleaning up.
pub(crate) fn server_dir(kind: &str) -> Result<TempDir, Error> {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_abandoned_dirs);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{kind}-"))
        .tempdir()
        .map_err(Error::io("create a temporary directory"))?;
    fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
        .map_err(Error::io("mark the temporary directory"))?;
    Ok(dir)
}

fn sweep_abandoned_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        let owner = fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        if let (true, Some(pid)) = (ours, owner) {
            // SAFETY: signal 0 only asks whether the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if !alive {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
}
