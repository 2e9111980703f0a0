//! The load engine: a fixed number of keep-alive HTTP/1.1 connections, each sending its next
//! request as soon as the last answer is read, for a fixed time. Every answer's latency goes into
//! an HDR histogram and its status into a tally; a progress line is redrawn every second.

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::Error;

/// How hard and how long.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
    /// Stop after this many requests in all, even before `duration` is up.
    pub limit: Option<u64>,
}

impl Load {
    pub fn timed(connections: usize, duration: Duration) -> Self {
        Self {
            connections,
            duration,
            limit: None,
        }
    }
}

/// Builds the `n`-th request of connection `connection`.
pub type Requests = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Latency of every answer, in microseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn answers(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Answers with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Fails unless every answer had one of `expected`, naming what else came back.
    pub fn expect_only(&self, what: &str, expected: &[u16]) -> Result<(), Error> {
        let other: Vec<String> = self
            .statuses
            .iter()
            .filter(|(status, _)| !expected.contains(status))
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        if other.is_empty() {
            Ok(())
        } else {
            Err(Error::Unexpected(format!(
                "{what}: expected only {expected:?}, also got {}",
                other.join(", ")
            )))
        }
    }

    pub fn per_second(&self) -> f64 {
        self.answers() as f64 / self.elapsed.as_secs_f64()
    }

    /// Answers with `status`, per second.
    pub fn per_second_with(&self, status: u16) -> f64 {
        self.count(status) as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `quantile` (0.99 for p99), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Runs `requests` against `target` with `load`, drawing a progress line named `label`.
pub async fn run(
    target: SocketAddr,
    load: Load,
    label: &str,
    requests: Requests,
) -> Result<Outcome, Error> {
    let done = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut connections = Vec::with_capacity(load.connections);
    for index in 0..load.connections {
        let requests = requests.clone();
        let done = done.clone();
        let budget = Budget {
            issued: issued.clone(),
            limit: load.limit.unwrap_or(u64::MAX),
            deadline,
        };
        connections.push(tokio::spawn(connection(
            target, index, budget, requests, done,
        )));
    }
    let progress = tokio::spawn(progress(
        label.to_owned(),
        done.clone(),
        started,
        load.duration,
    ));

    let mut statuses = BTreeMap::new();
    let mut latency = new_histogram();
    for connection in connections {
        let (their_statuses, their_latency) =
            connection.await.map_err(|e| Error::Load(e.to_string()))??;
        for (status, count) in their_statuses {
            *statuses.entry(status).or_insert(0) += count;
        }
        latency
            .add(&their_latency)
            .map_err(|e| Error::Load(e.to_string()))?;
    }
    let elapsed = started.elapsed();
    progress.abort();
    eprintln!();
    Ok(Outcome {
        statuses,
        latency,
        elapsed,
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// When a connection stops: at the deadline, or once all connections together sent `limit`.
struct Budget {
    issued: Arc<AtomicU64>,
    limit: u64,
    deadline: Instant,
}

impl Budget {
    fn take(&self) -> bool {
        Instant::now() < self.deadline && self.issued.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

async fn connection(
    target: SocketAddr,
    index: usize,
    budget: Budget,
    requests: Requests,
    done: Arc<AtomicU64>,
) -> Result<(BTreeMap<u16, u64>, Histogram<u64>), Error> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(Error::io(format!("connect to {target}")))?;
    stream
        .set_nodelay(true)
        .map_err(Error::io("set TCP_NODELAY"))?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Error::Load(format!("HTTP handshake with {target}: {e}")))?;
    tokio::spawn(driver);

    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut latency = new_histogram();
    let mut n = 0;
    while budget.take() {
        let request = requests(index, n);
        n += 1;
        let sent = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::Load(format!("request to {target}: {e}")))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Load(format!("answer from {target}: {e}")))?;
        latency.saturating_record(sent.elapsed().as_micros() as u64);
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
        done.fetch_add(1, Ordering::Relaxed);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::Load(format!(
                "{target} rate-limits the benchmark: turn its limit off"
            )));
        }
    }
    Ok((statuses, latency))
}

async fn progress(label: String, done: Arc<AtomicU64>, started: Instant, duration: Duration) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = done.load(Ordering::Relaxed);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r  {label}: {:>3}/{}s  {:>9} answers  {:>8}/s ",
            started.elapsed().as_secs(),
            duration.as_secs(),
            now,
            now - last
        );
        let _ = err.flush();
        last = now;
    }
}

/// A request with no body.
pub fn empty(method: hyper::Method, target: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, target.to_string())
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}
