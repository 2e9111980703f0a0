//! The fairness record as the public sees it during a drill. A watcher fetches the admission log
//! from either replica a few times a second: once published, an entry is part of the record for
//! good, so every fetch must extend the longest one seen so far, whatever happened to Redis.
//! Once the drill has settled, the whole record must pass `tenant-app verify-draw`'s check.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use timedeal_tenant_app::queue::fairness::{self, Fairness};

use crate::Error;

/// What the watcher saw.
#[derive(Default)]
struct Seen {
    longest: Vec<String>,
    fetches: usize,
    /// The first fetch that did not extend the longest before it.
    rewound: Option<String>,
}

pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

async fn fetch(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// How `now` relates to `before`: `None` when it extends it, else what differs.
fn rewind(before: &[String], now: &[String]) -> Option<String> {
    if now.len() < before.len() {
        return Some(format!(
            "{} entries, after {} had been published",
            now.len(),
            before.len()
        ));
    }
    before.iter().zip(now).position(|(a, b)| a != b).map(|at| {
        format!(
            "entry {} became {:?}, after {:?} had been published",
            at + 1,
            now[at],
            before[at]
        )
    })
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

impl Watcher {
    /// Starts watching the replicas at `urls`.
    pub fn start(urls: &[String]) -> Self {
        let seen: Arc<Mutex<Seen>> = Default::default();
        let urls = urls.to_vec();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .expect("an HTTP client");
                for turn in 0usize.. {
                    let url = format!("{}/api/fairness/log", urls[turn % urls.len()]);
                    if let Some(text) = fetch(&client, &url).await {
                        let now = lines(&text);
                        let mut seen = seen.lock().unwrap();
                        seen.fetches += 1;
                        if seen.rewound.is_none() {
                            seen.rewound = rewind(&seen.longest, &now);
                        }
                        if now.len() > seen.longest.len() {
                            seen.longest = now;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
        Self { seen, task }
    }

    /// Stops watching; then checks that no fetch rewound the log and that the record, fetched
    /// from `url` once it stopped moving, passes the draw's check and keeps every entry seen.
    pub async fn check(self, url: &str) -> Result<(), Error> {
        self.task.abort();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        if let Some(what) = seen.rewound {
            return Err(Error::Broken(format!(
                "the published admission log went back: {what}"
            )));
        }
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let record = fetch(&client, &format!("{url}/api/fairness")).await;
            let log = fetch(&client, &format!("{url}/api/fairness/log")).await;
            let again = fetch(&client, &format!("{url}/api/fairness")).await;
            if let (Some(record), Some(log)) = (record, log) {
                // The log did not move between the two reads of the record.
                if again.as_deref() == Some(record.as_str()) {
                    let record: Fairness = serde_json::from_str(&record).map_err(|e| {
                        Error::Unexpected(format!("/api/fairness is not a record: {e}"))
                    })?;
                    let log = lines(&log);
                    if let Some(what) = rewind(&seen.longest, &log) {
                        return Err(Error::Broken(format!(
                            "the published admission log went back: {what}"
                        )));
                    }
                    if record.seed.is_none() && log.is_empty() {
                        return Ok(());
                    }
                    return fairness::verify(&record, &log)
                        .map(|_| ())
                        .map_err(|e| Error::Broken(format!("the fairness record: {e}")));
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Broken(
                    "the fairness record never held still for a read".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_longer_log_with_the_same_start_extends_it() {
        assert_eq!(rewind(&log(&["1 1:3"]), &log(&["1 1:3", "2 2:1"])), None);
        assert_eq!(rewind(&[], &log(&["1 1:3"])), None);
    }

    #[test]
    fn a_shorter_or_rewritten_log_went_back() {
        assert!(rewind(&log(&["1 1:3", "2 2:1"]), &log(&["1 1:3"])).is_some());
        let rewritten = rewind(&log(&["1 1:3", "2 2:1"]), &log(&["1 1:3", "3 2:2"])).unwrap();
        assert!(rewritten.contains("entry 2"), "{rewritten}");
    }
}
