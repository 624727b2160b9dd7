//! The session tracker: a pure state machine fed presence observations with media
//! timestamps. No clocks, threads or I/O, so replay is exact and tests are too.
//!
//! Each observation says whether the shopper is in view ([`Sighting`]: since when they have
//! stood at the mirror, when they were last seen) or not; who counts as a shopper (close
//! enough, stopped, the nearest of several) is [`crate::presence`]'s business.
//!
//! ```text
//!   Idle ──present for enter_after_s──▶ Present ──unseen absent_after_s──▶ Away
//!    ▲                                    ▲                                 │
//!    │                                    └──present for enter_after_s──────┤
//!    └────────────────────────── unseen exit_after_s ◀──────────────────────┘
//! ```
//! Re-entry needs the same confirmation as entry, so a one-frame false detection neither
//! starts a session nor keeps a finished one alive.

use mirrorsight_contract::events::{EndReason, Event, EventKind};

use crate::ids::IdGenerator;
pub use crate::presence::Sighting;
use crate::{ConfigError, Section};

/// `[session]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A shopper must have stood at the mirror this long before a session starts (presence
    /// already needs a few detections to tell standing from walking past).
    pub enter_after_s: f64,
    /// Unseen this long inside a session: `person_left`.
    pub absent_after_s: f64,
    /// Unseen this long: the session ends.
    pub exit_after_s: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            enter_after_s: 0.3,
            absent_after_s: 1.0,
            exit_after_s: 30.0,
        }
    }
}

impl SessionConfig {
    /// Checks every value; the error names the full key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = Section("session");
        section.non_negative("enter_after_s", self.enter_after_s)?;
        section.positive("absent_after_s", self.absent_after_s)?;
        section.positive("exit_after_s", self.exit_after_s)?;
        if self.absent_after_s > self.exit_after_s {
            return Err(section.error(
                "absent_after_s",
                format!(
                    "must not exceed session.exit_after_s ({} > {})",
                    self.absent_after_s, self.exit_after_s
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle {
        candidate_since: Option<f64>,
    },
    Active {
        session: String,
        started: f64,
        last_seen: f64,
        away: Option<Away>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Away {
    candidate_since: Option<f64>,
}

#[derive(Debug)]
pub struct SessionTracker {
    config: SessionConfig,
    ids: IdGenerator,
    state: State,
}

impl SessionTracker {
    pub fn new(config: SessionConfig, ids: IdGenerator) -> Self {
        Self {
            config,
            ids,
            state: State::Idle {
                candidate_since: None,
            },
        }
    }

    /// The open session, if any.
    pub fn session(&self) -> Option<&str> {
        match &self.state {
            State::Active { session, .. } => Some(session),
            State::Idle { .. } => None,
        }
    }

    /// True while the shopper is confirmed in view inside a session.
    pub fn shopper_in_view(&self) -> bool {
        matches!(&self.state, State::Active { away: None, .. })
    }

    /// True while the tracker waits for evidence (a candidate, or an open session): callers
    /// should observe often then.
    pub fn wants_frequent_observations(&self) -> bool {
        match &self.state {
            State::Idle { candidate_since } => candidate_since.is_some(),
            State::Active { .. } => true,
        }
    }

    /// Feeds one observation taken at media time `t`: the shopper in view, or `None`.
    /// Observations must come in time order.
    pub fn observe(&mut self, t: f64, seen: Option<Sighting>, out: &mut Vec<Event>) {
        let cfg = &self.config;
        match &mut self.state {
            State::Idle { candidate_since } => {
                let Some(seen) = seen else {
                    *candidate_since = None;
                    return;
                };
                // Presence knows since when this shopper has stood there (a person who stopped
                // after walking in counts from when they stopped).
                let since = seen.since.min(t);
                *candidate_since = Some(since);
                if elapsed(since, t, cfg.enter_after_s) {
                    let session = self.ids.next_id();
                    out.push(Event::new(
                        t,
                        EventKind::SessionStarted {
                            session: session.clone(),
                        },
                    ));
                    self.state = State::Active {
                        session,
                        started: t,
                        last_seen: t,
                        away: None,
                    };
                }
                return;
            }
            State::Active {
                session,
                last_seen,
                away: away @ None,
                ..
            } => {
                if let Some(seen) = seen {
                    *last_seen = seen.last_seen.max(*last_seen);
                }
                if elapsed(*last_seen, t, cfg.absent_after_s) {
                    out.push(Event::new(
                        t,
                        EventKind::PersonLeft {
                            session: session.clone(),
                        },
                    ));
                    *away = Some(Away {
                        candidate_since: None,
                    });
                }
            }
            State::Active {
                session,
                last_seen,
                away: away @ Some(_),
                ..
            } => {
                let Some(a) = away.as_mut() else { return };
                if let Some(seen) = seen {
                    let since = *a.candidate_since.get_or_insert(seen.since.max(*last_seen));
                    if elapsed(since, t, cfg.enter_after_s) {
                        out.push(Event::new(
                            t,
                            EventKind::PersonReturned {
                                session: session.clone(),
                            },
                        ));
                        *last_seen = seen.last_seen;
                        *away = None;
                    }
                } else {
                    a.candidate_since = None;
                }
            }
        }
        self.check_exit(t, out);
    }

    fn check_exit(&mut self, t: f64, out: &mut Vec<Event>) {
        if let State::Active {
            session,
            started,
            last_seen,
            away: Some(away),
        } = &self.state
            && elapsed(*last_seen, t, self.config.exit_after_s)
        {
            out.push(Event::new(
                t,
                EventKind::SessionEnded {
                    session: session.clone(),
                    reason: EndReason::Absent,
                    duration_s: round_ms(t - *started),
                },
            ));
            // A shopper already walking back in keeps their evidence towards a new session.
            self.state = State::Idle {
                candidate_since: away.candidate_since,
            };
        }
    }

    /// Closes an open session because the stream ended or the daemon stops.
    pub fn finish(&mut self, t: f64, reason: EndReason, out: &mut Vec<Event>) {
        if let State::Active {
            session, started, ..
        } = &self.state
        {
            out.push(Event::new(
                t,
                EventKind::SessionEnded {
                    session: session.clone(),
                    reason,
                    duration_s: round_ms(t - *started),
                },
            ));
        }
        self.state = State::Idle {
            candidate_since: None,
        };
    }
}

/// `t - since >= duration`, tolerant of the float noise in media timestamps.
fn elapsed(since: f64, t: f64, duration: f64) -> bool {
    t - since >= duration - 1e-6
}

fn round_ms(s: f64) -> f64 {
    (s.max(0.0) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> SessionTracker {
        SessionTracker::new(
            SessionConfig {
                enter_after_s: 0.5,
                absent_after_s: 1.0,
                exit_after_s: 3.0,
            },
            IdGenerator::seeded(1),
        )
    }

    /// Presence as a detector that sees the shopper (or not) at `t` would report it: in view
    /// since the start of the current run of sightings.
    #[derive(Default)]
    struct Eyes {
        since: Option<f64>,
    }

    impl Eyes {
        fn see(&mut self, t: f64, present: bool) -> Option<Sighting> {
            if !present {
                self.since = None;
                return None;
            }
            let since = *self.since.get_or_insert(t);
            Some(Sighting {
                since,
                last_seen: t,
            })
        }
    }

    /// Feeds `present` observations every 0.1 s over [from, to) and returns compact event strings.
    fn feed(tr: &mut SessionTracker, from: f64, to: f64, present: bool, log: &mut Vec<String>) {
        let mut eyes = Eyes::default();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let t = from + i as f64 * 0.1;
            if t >= to - 1e-9 {
                break;
            }
            tr.observe(t, eyes.see(t, present), &mut out);
            i += 1;
        }
        log.extend(out.iter().map(|e| format!("{}@{}", e.type_name(), e.t)));
    }

    #[test]
    fn enter_then_exit_after_absence() {
        let mut tr = tracker();
        let mut log = Vec::new();
        feed(&mut tr, 0.0, 1.0, false, &mut log);
        feed(&mut tr, 1.0, 5.0, true, &mut log);
        feed(&mut tr, 5.0, 10.0, false, &mut log);
        // Last seen at 4.9: left at 5.9, ended at 7.9.
        assert_eq!(
            log,
            [
                "session_started@1.5",
                "person_left@5.9",
                "session_ended@7.9"
            ]
        );
    }

    #[test]
    fn short_absence_keeps_the_session() {
        let mut tr = tracker();
        let mut log = Vec::new();
        feed(&mut tr, 0.0, 2.0, true, &mut log);
        feed(&mut tr, 2.0, 3.5, false, &mut log);
        feed(&mut tr, 3.5, 5.0, true, &mut log);
        let session = tr.session().unwrap().to_string();
        assert_eq!(
            log,
            [
                "session_started@0.5",
                "person_left@2.9",
                "person_returned@4"
            ]
        );
        feed(&mut tr, 5.0, 9.0, false, &mut log);
        assert_eq!(log[3..], ["person_left@5.9", "session_ended@7.9"]);
        assert!(tr.session().is_none());
        assert_eq!(session.len(), 22);
    }

    #[test]
    fn absence_shorter_than_absent_after_is_silent() {
        let mut tr = tracker();
        let mut log = Vec::new();
        feed(&mut tr, 0.0, 2.0, true, &mut log);
        feed(&mut tr, 2.0, 2.5, false, &mut log);
        feed(&mut tr, 2.5, 4.0, true, &mut log);
        assert_eq!(log, ["session_started@0.5"]);
    }

    #[test]
    fn flicker_neither_starts_nor_prolongs_a_session() {
        let mut tr = tracker();
        let mut out = Vec::new();
        let mut eyes = Eyes::default();
        // One detection in three over 5 s: never 0.5 s of continuous presence.
        for i in 0..50 {
            let t = i as f64 * 0.1;
            tr.observe(t, eyes.see(t, i % 3 == 0), &mut out);
        }
        assert!(out.is_empty(), "{out:?}");

        let mut tr = tracker();
        let mut log = Vec::new();
        feed(&mut tr, 0.0, 2.0, true, &mut log);
        // Gone, with an isolated false detection every 1.5 s.
        let mut out = Vec::new();
        let mut eyes = Eyes::default();
        for i in 0..60 {
            let t = 2.0 + i as f64 * 0.1;
            tr.observe(t, eyes.see(t, i % 15 == 0 && i > 0), &mut out);
        }
        log.extend(out.iter().map(|e| format!("{}@{}", e.type_name(), e.t)));
        assert_eq!(
            log,
            [
                "session_started@0.5",
                "person_left@2.9",
                "session_ended@4.9"
            ]
        );
    }

    #[test]
    fn returning_at_the_deadline_starts_a_new_session_promptly() {
        let mut tr = tracker();
        let mut log = Vec::new();
        feed(&mut tr, 0.0, 1.0, true, &mut log); // last seen 0.9
        feed(&mut tr, 1.0, 3.6, false, &mut log);
        feed(&mut tr, 3.6, 5.0, true, &mut log); // candidate from 3.6, deadline 3.9
        assert_eq!(
            log,
            [
                "session_started@0.5",
                "person_left@1.9",
                "session_ended@3.9",
                "session_started@4.1"
            ]
        );
    }

    #[test]
    fn finish_closes_an_open_session_once() {
        let mut tr = tracker();
        let mut out = Vec::new();
        let mut eyes = Eyes::default();
        for i in 0..10 {
            let t = i as f64 * 0.1;
            tr.observe(t, eyes.see(t, true), &mut out);
        }
        tr.finish(1.0, EndReason::EndOfStream, &mut out);
        tr.finish(1.1, EndReason::EndOfStream, &mut out);
        let kinds: Vec<_> = out.iter().map(|e| e.type_name()).collect();
        assert_eq!(kinds, ["session_started", "session_ended"]);
        assert!(matches!(
            &out[1].kind,
            EventKind::SessionEnded { reason: EndReason::EndOfStream, duration_s, .. } if (*duration_s - 0.5).abs() < 1e-9
        ));
    }

    #[test]
    fn a_shopper_standing_since_earlier_starts_the_session_at_once() {
        // Presence says the shopper has stood there since 1.0 (they were confirmed late):
        // the session starts as soon as that is enter_after_s ago.
        let mut tr = tracker();
        let mut out = Vec::new();
        tr.observe(
            1.6,
            Some(Sighting {
                since: 1.0,
                last_seen: 1.6,
            }),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].type_name(), "session_started");
        assert_eq!(out[0].t, 1.6);
    }

    #[test]
    fn absence_counts_from_when_the_shopper_was_last_seen() {
        let mut tr = tracker();
        let mut log = Vec::new();
        feed(&mut tr, 0.0, 2.0, true, &mut log); // last seen 1.9
        let mut out = Vec::new();
        // Reported present (a missed detection bridged) but last seen at 1.9.
        tr.observe(
            2.95,
            Some(Sighting {
                since: 0.0,
                last_seen: 1.9,
            }),
            &mut out,
        );
        assert_eq!(
            out.iter().map(|e| e.type_name()).collect::<Vec<_>>(),
            ["person_left"]
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let c = SessionConfig {
            absent_after_s: 5.0,
            exit_after_s: 2.0,
            ..SessionConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "session.absent_after_s");
        assert!(SessionConfig::default().validate().is_ok());
    }

    #[test]
    fn seeded_trackers_give_identical_ids() {
        let run = || {
            let mut tr = tracker();
            let mut out = Vec::new();
            let mut eyes = Eyes::default();
            for i in 0..10 {
                let t = i as f64 * 0.1;
                tr.observe(t, eyes.see(t, true), &mut out);
            }
            out
        };
        assert_eq!(run(), run());
    }
}
