//! A deal as an iCalendar (RFC 5545) entry: "remind me" without signing up. The calendar app
//! holds the reminders (alarms 12 hours and 1 hour before the start), so nothing about the
//! shopper is stored anywhere.

use chrono::{DateTime, Utc};

/// What the entry says.
pub struct Reminder<'a> {
    /// Stable across downloads, so importing twice updates one entry instead of adding two.
    pub uid: &'a str,
    pub summary: &'a str,
    pub description: &'a str,
    pub url: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// When the entry was made (`DTSTAMP`).
    pub now: DateTime<Utc>,
}

/// Hours before the start at which the calendar reminds.
pub const ALARMS_HOURS: [u32; 2] = [12, 1];

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Text escaped as RFC 5545 §3.3.11 asks.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded at 75 octets (never inside a character), ending in CRLF.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

/// The `.ics` document.
pub fn calendar(reminder: &Reminder) -> String {
    let mut out = String::new();
    for content in [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Timedeal//Deal reminder//EN".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}", text(reminder.uid)),
        format!("DTSTAMP:{}", stamp(reminder.now)),
        format!("DTSTART:{}", stamp(reminder.start)),
        format!("DTEND:{}", stamp(reminder.end)),
        format!("SUMMARY:{}", text(reminder.summary)),
        format!("DESCRIPTION:{}", text(reminder.description)),
        format!("URL:{}", text(reminder.url)),
    ] {
        line(&mut out, &content);
    }
    for hours in ALARMS_HOURS {
        for content in [
            "BEGIN:VALARM".to_owned(),
            "ACTION:DISPLAY".to_owned(),
            format!(
                "DESCRIPTION:{}",
                text(&format!("{} starts in {hours} h", reminder.summary))
            ),
            format!("TRIGGER:-PT{hours}H"),
            "END:VALARM".to_owned(),
        ] {
            line(&mut out, &content);
        }
    }
    line(&mut out, "END:VEVENT");
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(summary: &str) -> String {
        calendar(&Reminder {
            uid: "acme/winter-headphones@timedeal",
            summary,
            description: "99.00 USD instead of 299.00 USD; 1000 in stock",
            url: "https://headphones.deals.example.com/",
            start: "2026-12-01T03:00:00Z".parse().unwrap(),
            end: "2026-12-01T04:00:00Z".parse().unwrap(),
            now: "2026-11-23T10:00:00Z".parse().unwrap(),
        })
    }

    #[test]
    fn the_entry_has_its_times_and_two_alarms() {
        let ics = sample("NC-700, at 67% off");
        assert!(ics.contains("DTSTART:20261201T030000Z\r\n"));
        assert!(ics.contains("DTEND:20261201T040000Z\r\n"));
        assert!(ics.contains("SUMMARY:NC-700\\, at 67% off\r\n"), "{ics}");
        assert!(ics.contains("TRIGGER:-PT12H\r\n"));
        assert!(ics.contains("TRIGGER:-PT1H\r\n"));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_a_character() {
        let ics = sample(&"Kopfhörer ".repeat(20));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("SUMMARY:{}", "Kopfhörer ".repeat(20))));
    }
}
