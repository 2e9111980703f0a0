//! What a benchmark ran on, for BENCHMARKS.md: the figures mean nothing without it.

use std::process::Command;

/// The machine and the versions of everything measured.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
    pub versions: Vec<(String, String)>,
}

impl Machine {
    /// Looks the machine up; anything that cannot be read is shown as "unknown".
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                let kib = meminfo
                    .lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()?;
                Some(kib / 1024.0 / 1024.0)
            })
            .unwrap_or(0.0);
        let kernel = first_line("uname", &["-r"]);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|release| {
                release.lines().find_map(|line| {
                    Some(
                        line.strip_prefix("PRETTY_NAME=")?
                            .trim_matches('"')
                            .to_owned(),
                    )
                })
            })
            .unwrap_or_else(|| "unknown".into());
        // Debian keeps the server outside PATH, one directory per major version.
        let postgres = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                dirs.filter_map(Result::ok)
                    .map(|dir| dir.path().join("bin/postgres"))
                    .filter(|path| path.exists())
                    .max()
            })
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "postgres".into());
        let versions = vec![
            ("timedeal".into(), env!("CARGO_PKG_VERSION").into()),
            ("rustc".into(), first_line("rustc", &["--version"])),
            (
                "redis-server".into(),
                first_line("redis-server", &["--version"]),
            ),
            ("postgres".into(), first_line(&postgres, &["--version"])),
        ];
        Self {
            cpu,
            cores,
            memory_gib,
            kernel,
            os,
            versions,
        }
    }
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}
