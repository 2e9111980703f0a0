//! A randomness beacon on a free loopback port, answering as drand's HTTP API does: `GET /info`
//! (the chain's `genesis_time` and `period`, in seconds) and `GET /public/<round>` (the round's
//! `randomness`, hex), and `425 Too Early` for a round not yet emitted. Its values are fixed by a
//! secret of its own, so nobody can tell a round's value before it is emitted.

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use crate::Error;

/// A beacon of its own, emitting a round every `period` seconds since its genesis.
pub struct Beacon {
    port: u16,
    genesis: u64,
    period: u64,
    secret: u64,
    served: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Beacon {
    /// Starts a beacon whose genesis was a minute ago, emitting a round every `period` seconds.
    pub fn start(period: u64) -> Result<Self, Error> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("bind a beacon"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("the beacon's address"))?
            .port();
        let secret = mix(u64::from(port)
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default());
        let beacon = Self {
            port,
            genesis: unix_seconds() - 60,
            period: period.max(1),
            secret,
            served: Arc::default(),
            stopped: Arc::default(),
        };
        let (genesis, period, served, stopped) = (
            beacon.genesis,
            beacon.period,
            beacon.served.clone(),
            beacon.stopped.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let served = served.clone();
                std::thread::spawn(move || {
                    if answer(stream, genesis, period, secret) {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Ok(beacon)
    }

    /// The chain's base URL: `<url>/info`, `<url>/public/<round>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Round `round`'s randomness, hex, as the beacon serves it once emitted.
    pub fn randomness(&self, round: u64) -> String {
        randomness(self.secret, round)
    }

    /// Rounds served so far.
    pub fn rounds_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so that it sees the stop.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn randomness(secret: u64, round: u64) -> String {
    (0..4u64)
        .map(|i| format!("{:016x}", mix(secret ^ mix(round) ^ mix(i + 1))))
        .collect()
}

/// Answers one request; true when it served a round.
fn answer(mut stream: TcpStream, genesis: u64, period: u64, secret: u64) -> bool {
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return false;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let now = unix_seconds();
    // Round r is emitted at genesis + (r - 1) * period.
    let latest = (now.saturating_sub(genesis)) / period + 1;
    let (status, body, round) = match path.trim_end_matches('/') {
        "/info" => (
            "200 OK",
            format!(
                r#"{{"period":{period},"genesis_time":{genesis},"hash":"loopback","metadata":{{"beaconID":"loopback"}}}}"#
            ),
            false,
        ),
        other => match other.strip_prefix("/public/").map(|r| {
            if r == "latest" {
                Some(latest)
            } else {
                r.parse().ok()
            }
        }) {
            Some(Some(round)) if round >= 1 && round <= latest => (
                "200 OK",
                format!(
                    r#"{{"round":{round},"randomness":"{}","signature":""}}"#,
                    randomness(secret, round)
                ),
                true,
            ),
            Some(Some(_)) => (
                "425 Too Early",
                r#"{"error":"round not yet emitted"}"#.into(),
                false,
            ),
            _ => ("404 Not Found", r#"{"error":"not found"}"#.into(), false),
        },
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    round && status.starts_with("200")
}
