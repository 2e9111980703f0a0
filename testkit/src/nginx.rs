//! nginx (Debian's package) as a caching reverse proxy on loopback, in front of one or more
//! storefronts: the public head's location gets the snippet a deal's head Ingress carries, the
//! rest is passed through unbuffered as ingress-nginx does for live updates. Each request it
//! answers is logged with its cache status, so a test can count hits and what reached the
//! storefronts.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    process::{find_program, log_to, on_free_port, server_dir, spawn_tied, wait_until},
    Error,
};

/// What goes into the proxy's configuration.
pub struct ProxyConfig<'a> {
    /// The storefronts, by port on 127.0.0.1.
    pub upstreams: &'a [u16],
    /// The path cached, such as `/api/queue/head` (an exact location).
    pub cached_path: &'a str,
    /// Lines for the `http` block, given the directory the proxy may write to (the cache's
    /// `proxy_cache_path`).
    pub http_snippet: &'a dyn Fn(&Path) -> String,
    /// Lines for the cached path's location.
    pub location_snippet: &'a str,
}

pub struct CachingProxy {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl CachingProxy {
    /// Starts nginx as one process on a free loopback port; waits up to 10 s for it to listen.
    pub fn start(config: &ProxyConfig) -> Result<Self, Error> {
        let nginx =
            find_program("nginx", &[PathBuf::from("/usr/sbin")]).ok_or_else(|| Error::Missing {
                program: "nginx",
                looked: "PATH and /usr/sbin".into(),
                install: "apt-get install nginx",
            })?;
        on_free_port(|port| {
            let dir = server_dir("nginx")?;
            let root = dir.path();
            for sub in ["cache", "temp"] {
                std::fs::create_dir_all(root.join(sub))
                    .map_err(Error::io(format!("create {sub} for nginx")))?;
            }
            let conf = root.join("nginx.conf");
            std::fs::write(&conf, render(config, root, port))
                .map_err(Error::io("write nginx.conf"))?;
            let log = root.join("nginx.log");
            let mut command = Command::new(&nginx);
            command
                .arg("-p")
                .arg(root)
                .arg("-e")
                .arg(root.join("error.log"))
                .arg("-c")
                .arg(&conf);
            log_to(&mut command, &log)?;
            let mut child = spawn_tied(command, libc::SIGKILL).map_err(Error::io("start nginx"))?;
            let error_log = root.join("error.log");
            wait_until(
                "nginx",
                &mut child,
                &error_log,
                Duration::from_secs(10),
                || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
            )
            .inspect_err(|_| {
                let _ = child.kill();
            })?;
            Ok(Self { child, port, dir })
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests for the cached path answered so far, by nginx's `$upstream_cache_status`
    /// (`HIT`, `MISS`, `EXPIRED`, `UPDATING`, `STALE`, `REVALIDATED`, `BYPASS`; `-` for none).
    pub fn cache_statuses(&self) -> BTreeMap<String, u64> {
        let text = std::fs::read_to_string(self.dir.path().join("cached.log")).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            *counts.entry(line.trim().to_owned()).or_insert(0) += 1;
        }
        counts
    }

    /// nginx's error log, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn render(config: &ProxyConfig, root: &Path, port: u16) -> String {
    let temp = root.join("temp");
    let temp = temp.display();
    let servers: String = config
        .upstreams
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    // One process, no workers: it dies with the test (a worker would outlive a killed master),
    // and as root it keeps its user, so it can write the test's directory.
    format!(
        "master_process off;\n\
         daemon off;\n\
         pid {root}/nginx.pid;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 log_format cache_status '$upstream_cache_status';\n\
         \x20 client_body_temp_path {temp}/body;\n\
         \x20 proxy_temp_path {temp}/proxy;\n\
         \x20 fastcgi_temp_path {temp}/fastcgi;\n\
         \x20 uwsgi_temp_path {temp}/uwsgi;\n\
         \x20 scgi_temp_path {temp}/scgi;\n\
         \x20 {http}\n\
         \x20 upstream storefronts {{\n{servers}    keepalive 256;\n  }}\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port} backlog=4096;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   proxy_http_version 1.1;\n\
         \x20   proxy_set_header Connection \"\";\n\
         \x20   proxy_set_header Host $host;\n\
         \x20   location = {path} {{\n\
         \x20     access_log {root}/cached.log cache_status buffer=64k flush=100ms;\n\
         \x20     proxy_buffering on;\n\
         \x20     {location}\n\
         \x20     proxy_pass http://storefronts;\n\
         \x20   }}\n\
         \x20   location / {{\n\
         \x20     proxy_buffering off;\n\
         \x20     proxy_read_timeout 3600s;\n\
         \x20     proxy_pass http://storefronts;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        root = root.display(),
        http = (config.http_snippet)(&root.join("cache")),
        path = config.cached_path,
        location = config.location_snippet.replace('\n', "\n      "),
    )
}

impl Drop for CachingProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
