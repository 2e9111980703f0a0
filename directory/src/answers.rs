//! Answers built in the last second, by path and query, so a crowd reloading one page shares
//! one rendering and one hash: a reload with a current ETag costs a lookup, not a page.
//!
//! An answer is reused while the deals are the same listing (the same `Arc`), no deal changed
//! state by the clock since it was built, and it is less than [`FRESH_FOR`] old, which also
//! covers what only the clock moves (a shopper's "today" at their midnight). Queries are the
//! shopper's to choose, so the store holds at most [`CAPACITY`] answers and starts afresh when
//! full.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Duration, Utc};

use crate::{http::etag, source::Deals};

/// The longest an answer is reused.
pub const FRESH_FOR: Duration = Duration::seconds(1);

/// The most answers kept at once.
pub const CAPACITY: usize = 256;

/// A built answer: its body, type and ETag.
#[derive(Clone)]
pub struct Answer {
    pub body: axum::body::Bytes,
    pub content_type: &'static str,
    pub etag: String,
}

impl Answer {
    pub fn new(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            etag: etag(&body),
            body: body.into(),
            content_type,
        }
    }
}

struct Kept {
    answer: Answer,
    deals: Deals,
    until: DateTime<Utc>,
}

#[derive(Default)]
pub struct Answers {
    kept: Mutex<HashMap<String, Kept>>,
}

impl Answers {
    /// The answer kept for `key`, if it still holds for `deals` at `now`.
    pub fn get(&self, key: &str, deals: &Deals, now: DateTime<Utc>) -> Option<Answer> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(key)
            .filter(|k| std::sync::Arc::ptr_eq(&k.deals, deals) && now < k.until)
            .map(|k| k.answer.clone())
    }

    /// Keeps `answer` for `key` until `until` (at most [`FRESH_FOR`] from `now`).
    pub fn put(
        &self,
        key: String,
        answer: Answer,
        deals: Deals,
        now: DateTime<Utc>,
        next_change: Option<DateTime<Utc>>,
    ) {
        let until = next_change.map_or(now + FRESH_FOR, |at| at.min(now + FRESH_FOR));
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= CAPACITY && !kept.contains_key(&key) {
            kept.clear();
        }
        kept.insert(
            key,
            Kept {
                answer,
                deals,
                until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_answer_holds_for_the_same_deals_until_a_second_or_the_next_change() {
        let answers = Answers::default();
        let deals: Deals = Arc::new(Vec::new());
        let now = at("2026-12-24T12:00:00Z");
        let answer = Answer::new("text/html", b"page".to_vec());
        answers.put("/".into(), answer.clone(), deals.clone(), now, None);
        let got = answers.get("/", &deals, now + Duration::milliseconds(999));
        assert_eq!(got.map(|a| a.etag), Some(answer.etag.clone()));
        assert!(answers.get("/", &deals, now + FRESH_FOR).is_none());
        assert!(answers.get("/?q=tea", &deals, now).is_none());
        // Another listing (the deals were read again): built anew.
        assert!(answers.get("/", &Arc::new(Vec::new()), now).is_none());
        // A deal starts in 300 ms: the answer holds until then only.
        let soon = now + Duration::milliseconds(300);
        answers.put("/".into(), answer, deals.clone(), now, Some(soon));
        assert!(answers.get("/", &deals, soon).is_none());
    }

    #[test]
    fn a_flood_of_queries_never_grows_the_store_past_its_capacity() {
        let answers = Answers::default();
        let deals: Deals = Arc::new(Vec::new());
        let now = at("2026-12-24T12:00:00Z");
        for i in 0..CAPACITY * 3 {
            let answer = Answer::new("application/json", format!("{i}").into_bytes());
            answers.put(format!("/?q={i}"), answer, deals.clone(), now, None);
        }
        assert!(answers.kept.lock().unwrap().len() <= CAPACITY);
    }
}
