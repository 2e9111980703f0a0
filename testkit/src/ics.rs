//! Calendar entries read as a calendar app reads them (the `ical` parser), for tests of
//! "remind me".

use std::{collections::BTreeMap, io::BufReader};

/// The one event of an `.ics` document: its properties, and its alarms' triggers in order.
#[derive(Debug)]
pub struct Event {
    pub properties: BTreeMap<String, String>,
    pub triggers: Vec<String>,
}

/// Parses `text`, panicking with what is wrong when it is not one calendar with one event.
pub fn event(text: &str) -> Event {
    let calendar = ical::IcalParser::new(BufReader::new(text.as_bytes()))
        .next()
        .expect("a calendar")
        .unwrap_or_else(|e| panic!("the calendar does not parse: {e}\n{text}"));
    assert_eq!(calendar.events.len(), 1, "one event: {text}");
    let event = &calendar.events[0];
    Event {
        properties: event
            .properties
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.value.clone()?)))
            .collect(),
        triggers: event
            .alarms
            .iter()
            .flat_map(|alarm| alarm.properties.iter())
            .filter(|p| p.name == "TRIGGER")
            .filter_map(|p| p.value.clone())
            .collect(),
    }
}
