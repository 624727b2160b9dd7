//! Scoring a replay against ground-truth labels (`../shared/footage/labels/*.json`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use mirrorsight_contract::events::{EndReason, Event, EventKind, GestureKind, SwipeMotion};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LabelsError {
    #[error("labels {path}: {reason} (expected the format of shared/footage/labels/*.json)")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Labels {
    #[serde(default)]
    pub clip: String,
    /// `None` when presence is not labelled for this clip.
    pub presence: Option<Vec<[f64; 2]>>,
    #[serde(default)]
    pub gestures: Vec<GestureLabel>,
    #[serde(default)]
    pub gestures_complete: bool,
    #[serde(default = "default_tolerance")]
    pub tolerance_s: f64,
}

fn default_tolerance() -> f64 {
    0.5
}

#[derive(Debug, Clone, Deserialize)]
pub struct GestureLabel {
    pub kind: String,
    #[serde(default)]
    pub motion: Option<String>,
    pub start: f64,
    pub end: f64,
}

impl Labels {
    pub fn load(path: &Path) -> Result<Self, LabelsError> {
        let invalid = |reason: String| LabelsError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
    }
}

/// A session as seen in the event stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedSession {
    pub start: f64,
    pub end: f64,
    /// True when it ended because the shopper left (not end of stream).
    pub ended_by_absence: bool,
}

pub fn sessions(events: &[Event]) -> Vec<ObservedSession> {
    let mut open: BTreeMap<String, f64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::SessionStarted { session } => {
                open.insert(session.clone(), e.t);
            }
            EventKind::SessionEnded {
                session, reason, ..
            } => {
                if let Some(start) = open.remove(session) {
                    out.push(ObservedSession {
                        start,
                        end: e.t,
                        ended_by_absence: *reason == EndReason::Absent,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionScore {
    pub labelled: usize,
    pub detected: usize,
    pub matched: usize,
    pub precision: f64,
    pub recall: f64,
    /// Per matched pair: detected start − labelled start.
    pub start_errors: Vec<f64>,
    /// Per matched pair that ended by absence: detected end − (labelled end + exit_after_s).
    pub end_errors: Vec<f64>,
}

/// One-to-one matching of detected sessions to labelled presence intervals by overlap.
pub fn score_sessions(
    observed: &[ObservedSession],
    labelled: &[[f64; 2]],
    exit_after_s: f64,
) -> SessionScore {
    let mut pairs = Vec::new();
    for (i, s) in observed.iter().enumerate() {
        // The shopper was last seen about exit_after_s before an absence-ended session closed.
        let seen_until = if s.ended_by_absence {
            s.end - exit_after_s
        } else {
            s.end
        };
        for (j, l) in labelled.iter().enumerate() {
            let overlap = seen_until.min(l[1]) - s.start.max(l[0]);
            if overlap > 0.0 {
                pairs.push((overlap, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_obs, mut used_lab) = (vec![false; observed.len()], vec![false; labelled.len()]);
    let mut matches = Vec::new();
    for (_, i, j) in pairs {
        if !used_obs[i] && !used_lab[j] {
            used_obs[i] = true;
            used_lab[j] = true;
            matches.push((i, j));
        }
    }
    matches.sort();
    let start_errors = matches
        .iter()
        .map(|&(i, j)| observed[i].start - labelled[j][0])
        .collect();
    let end_errors = matches
        .iter()
        .filter(|&&(i, _)| observed[i].ended_by_absence)
        .map(|&(i, j)| observed[i].end - (labelled[j][1] + exit_after_s))
        .collect();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    SessionScore {
        labelled: labelled.len(),
        detected: observed.len(),
        matched: matches.len(),
        precision: ratio(matches.len(), observed.len()),
        recall: ratio(matches.len(), labelled.len()),
        start_errors,
        end_errors,
    }
}

/// A recognised gesture as labels name it: `swipe:image_left_to_right`, `thumbs_up`, ...
pub fn gesture_key(gesture: GestureKind, motion: Option<SwipeMotion>) -> String {
    let name = serde_json::to_value(gesture)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match motion {
        Some(m) => {
            let m = serde_json::to_value(m)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{name}:{m}")
        }
        None => name,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GestureScore {
    pub matched: usize,
    pub missed: usize,
    /// `None` when the labels are not complete (other shapes occur unlabelled).
    pub false_positives: Option<usize>,
    /// Event time − labelled end, per match.
    pub delays: Vec<f64>,
    /// The matched event's index in the scored event list, per match (as `delays`).
    #[serde(skip)]
    pub matched_events: Vec<usize>,
}

pub fn score_gestures(events: &[Event], labels: &Labels) -> BTreeMap<String, GestureScore> {
    let detected: Vec<(String, f64, usize)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.kind {
            EventKind::Gesture {
                gesture, motion, ..
            } => Some((gesture_key(*gesture, *motion), e.t, i)),
            _ => None,
        })
        .collect();
    let labelled: Vec<(String, f64, f64)> = labels
        .gestures
        .iter()
        .map(|g| {
            (
                g.motion
                    .as_ref()
                    .map_or(g.kind.clone(), |m| format!("{}:{m}", g.kind)),
                g.start,
                g.end,
            )
        })
        .collect();
    let tol = labels.tolerance_s;
    let mut scores: BTreeMap<String, GestureScore> = BTreeMap::new();
    let mut used = vec![false; detected.len()];
    for (kind, start, end) in &labelled {
        let score = scores.entry(kind.clone()).or_default();
        let hit = detected
            .iter()
            .enumerate()
            .filter(|(i, (k, t, _))| !used[*i] && k == kind && *t >= start - tol && *t <= end + tol)
            .min_by(|a, b| (a.1.1 - end).abs().total_cmp(&(b.1.1 - end).abs()))
            .map(|(i, (_, t, event))| (i, *t, *event));
        match hit {
            Some((i, t, event)) => {
                used[i] = true;
                score.matched += 1;
                score.delays.push(t - end);
                score.matched_events.push(event);
            }
            None => score.missed += 1,
        }
    }
    for (i, (kind, _, _)) in detected.iter().enumerate() {
        let score = scores.entry(kind.clone()).or_default();
        if labels.gestures_complete {
            *score.false_positives.get_or_insert(0) += usize::from(!used[i]);
        }
    }
    if labels.gestures_complete {
        for s in scores.values_mut() {
            s.false_positives.get_or_insert(0);
        }
    }
    scores
}

/// Labelled kind × detected kind, with `none` on either side: a missed gesture is
/// (kind, none), a false one (none, kind), a confusion (thumbs_up, open_palm).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Confusion {
    /// Row and column names, `none` last.
    pub kinds: Vec<String>,
    /// `counts[labelled][detected]`.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
}

pub const NONE: &str = "none";

/// Gesture kinds that trigger an action by default (a switch, a photo, a discard): a false
/// one is a false trigger even where the labels do not list every hand shape.
const TRIGGERS: &[&str] = &[
    "swipe:image_left_to_right",
    "swipe:image_right_to_left",
    "thumbs_up",
    "thumbs_down",
    "open_palm",
];

fn detected_gestures(events: &[Event]) -> Vec<(String, f64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Gesture {
                gesture, motion, ..
            } => Some((gesture_key(*gesture, *motion), e.t)),
            _ => None,
        })
        .collect()
}

fn label_key(g: &GestureLabel) -> String {
    g.motion
        .as_ref()
        .map_or(g.kind.clone(), |m| format!("{}:{m}", g.kind))
}

/// Each labelled gesture takes the detection of its own kind inside its interval (± the
/// tolerance) if there is one, else the nearest detection of another kind there, else none.
pub fn confusion(events: &[Event], labels: &Labels) -> Confusion {
    let detected = detected_gestures(events);
    let tol = labels.tolerance_s;
    let mut used = vec![false; detected.len()];
    let mut pairs: Vec<(String, String)> = Vec::new();
    for g in &labels.gestures {
        let key = label_key(g);
        let window = |t: f64| t >= g.start - tol && t <= g.end + tol;
        let pick = |same: bool| {
            detected
                .iter()
                .enumerate()
                .filter(|(i, (k, t))| !used[*i] && window(*t) && (*k == key) == same)
                .min_by(|a, b| (a.1.1 - g.end).abs().total_cmp(&(b.1.1 - g.end).abs()))
                .map(|(i, _)| i)
        };
        match pick(true).or_else(|| pick(false)) {
            Some(i) => {
                used[i] = true;
                pairs.push((key, detected[i].0.clone()));
            }
            None => pairs.push((key, NONE.to_string())),
        }
    }
    for (i, (k, _)) in detected.iter().enumerate() {
        if !used[i] {
            pairs.push((NONE.to_string(), k.clone()));
        }
    }
    let mut kinds: Vec<String> = pairs
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .filter(|k| k != NONE)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds.push(NONE.to_string());
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (a, b) in pairs {
        *counts.entry(a).or_default().entry(b).or_default() += 1;
    }
    Confusion { kinds, counts }
}

impl Confusion {
    pub fn count(&self, labelled: &str, detected: &str) -> usize {
        self.counts
            .get(labelled)
            .and_then(|row| row.get(detected))
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Display for Confusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CORNER: &str = "labelled \\ detected";
        let width = self
            .kinds
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(CORNER.len());
        write!(f, "  {CORNER:<width$}")?;
        for k in &self.kinds {
            write!(f, " {:>w$}", k, w = k.len().max(4))?;
        }
        writeln!(f)?;
        for row in &self.kinds {
            write!(f, "  {row:<width$}")?;
            for col in &self.kinds {
                let n = self.count(row, col);
                let cell = if n == 0 {
                    ".".to_string()
                } else {
                    n.to_string()
                };
                write!(f, " {:>w$}", cell, w = col.len().max(4))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Detections of a triggering kind (swipe, thumbs, open palm) that match no label of their own
/// kind: each would have switched an outfit, taken or discarded a photo by mistake.
pub fn false_triggers(events: &[Event], labels: &Labels) -> usize {
    let confusion = confusion(events, labels);
    TRIGGERS
        .iter()
        .map(|detected| {
            confusion
                .kinds
                .iter()
                .filter(|labelled| labelled.as_str() != *detected)
                .map(|labelled| confusion.count(labelled, detected))
                .sum::<usize>()
        })
        .sum()
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub clip: String,
    /// The `--augment` chain the clip went through (`none`: as recorded).
    pub transform: String,
    pub sessions: Option<SessionScore>,
    pub gestures: BTreeMap<String, GestureScore>,
    pub confusion: Confusion,
    /// See [`false_triggers`].
    pub false_triggers: usize,
    /// How long after their labelled end the matched gestures came out.
    pub latency: Option<GestureLatency>,
}

/// How long after the labelled end of each matched gesture its event came out (issue #13's
/// "gesture event ≤ 150 ms after the gesture's end"): the event's media time minus the
/// labelled end, plus, in `eval --realtime`, how late the event left the pipeline after that
/// media time (the processing delay a shopper in front of a camera sees).
#[derive(Debug, Clone, Serialize)]
pub struct GestureLatency {
    /// Whether the processing delay is included (`--realtime`), or media time only.
    pub realtime: bool,
    /// One per matched gesture, seconds (negative: recognised before the labelled end).
    pub samples_s: Vec<f64>,
    pub p50_s: f64,
    pub p95_s: f64,
    pub max_s: f64,
}

impl GestureLatency {
    /// From `report`'s matched gestures; `processing_s[i]` is how late event `i` of the scored
    /// list left the pipeline (realtime runs), `None` for media time only.
    pub fn of(report: &Report, processing_s: Option<&[f64]>) -> Option<Self> {
        let samples: Vec<f64> = report
            .gestures
            .values()
            .flat_map(|g| g.delays.iter().zip(&g.matched_events))
            .map(|(delay, event)| {
                delay
                    + processing_s
                        .and_then(|p| p.get(*event))
                        .copied()
                        .unwrap_or(0.0)
            })
            .collect();
        Self::from_samples(samples, processing_s.is_some())
    }

    /// Quantiles of `samples` (nearest rank); `None` when there is none.
    pub fn from_samples(mut samples: Vec<f64>, realtime: bool) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Some(Self {
            realtime,
            p50_s: rank(0.5),
            p95_s: rank(0.95),
            max_s: samples[samples.len() - 1],
            samples_s: samples,
        })
    }
}

impl fmt::Display for GestureLatency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gesture latency after labelled end ({}): p50 {:+.0} ms, p95 {:+.0} ms, max {:+.0} ms over {} gestures",
            if self.realtime {
                "media time + processing, realtime"
            } else {
                "media time only; --realtime adds processing"
            },
            self.p50_s * 1000.0,
            self.p95_s * 1000.0,
            self.max_s * 1000.0,
            self.samples_s.len()
        )
    }
}

pub fn evaluate(events: &[Event], labels: &Labels, exit_after_s: f64) -> Report {
    Report {
        clip: labels.clip.clone(),
        transform: NONE.to_string(),
        sessions: labels
            .presence
            .as_ref()
            .map(|p| score_sessions(&sessions(events), p, exit_after_s)),
        gestures: score_gestures(events, labels),
        confusion: confusion(events, labels),
        false_triggers: false_triggers(events, labels),
        latency: None,
    }
}

impl Report {
    /// Labelled gestures found, and how many were labelled.
    pub fn gesture_recall(&self) -> (usize, usize) {
        self.gestures.values().fold((0, 0), |(m, n), g| {
            (m + g.matched, n + g.matched + g.missed)
        })
    }

    /// False detections of any kind (only counted where the labels are complete).
    pub fn false_gestures(&self) -> Option<usize> {
        self.gestures
            .values()
            .map(|g| g.false_positives)
            .sum::<Option<usize>>()
    }

    /// The largest session boundary error, start or end, in seconds.
    pub fn worst_boundary_error(&self) -> Option<f64> {
        let s = self.sessions.as_ref()?;
        s.start_errors
            .iter()
            .chain(&s.end_errors)
            .copied()
            .fold(None, |acc: Option<f64>, e| {
                Some(acc.map_or(e, |a| if e.abs() > a.abs() { e } else { a }))
            })
    }
}

/// `eval --augment`: one row per transform.
pub struct RobustnessTable<'a>(pub &'a [Report]);

impl fmt::Display for RobustnessTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .0
            .iter()
            .map(|r| r.transform.len())
            .max()
            .unwrap_or(9)
            .max(9);
        writeln!(
            f,
            "{:<width$}  {:>8}  {:>9}  {:>8}  {:>7}  {:>6}  {:>5}  {:>8}",
            "transform",
            "sessions",
            "worst err",
            "gestures",
            "matched",
            "missed",
            "false",
            "triggers"
        )?;
        for r in self.0 {
            let sessions = r.sessions.as_ref().map_or("n/a".to_string(), |s| {
                format!("{}/{}+{}", s.matched, s.labelled, s.detected - s.matched)
            });
            let err = r
                .worst_boundary_error()
                .map_or("-".to_string(), |e| format!("{e:+.2} s"));
            let (matched, labelled) = r.gesture_recall();
            let recall = if labelled == 0 {
                "-".to_string()
            } else {
                format!("{:.2}", matched as f64 / labelled as f64)
            };
            let false_ = r
                .false_gestures()
                .map_or("n/a".to_string(), |n| n.to_string());
            writeln!(
                f,
                "{:<width$}  {:>8}  {:>9}  {:>8}  {:>7}  {:>6}  {:>5}  {:>8}",
                r.transform,
                sessions,
                err,
                recall,
                matched,
                labelled - matched,
                false_,
                r.false_triggers
            )?;
        }
        Ok(())
    }
}

fn stats(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mean_abs = v.iter().map(|x| x.abs()).sum::<f64>() / v.len() as f64;
    let worst = v
        .iter()
        .copied()
        .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
    format!("mean |err| {mean_abs:.2} s, worst {worst:+.2} s")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "clip: {}", self.clip)?;
        match &self.sessions {
            Some(s) => {
                writeln!(
                    f,
                    "sessions: {} detected, {} labelled, {} matched; precision {:.2}, recall {:.2}",
                    s.detected, s.labelled, s.matched, s.precision, s.recall
                )?;
                writeln!(f, "  start error: {}", stats(&s.start_errors))?;
                writeln!(
                    f,
                    "  end error (vs labelled exit + exit_after_s): {}",
                    stats(&s.end_errors)
                )?;
            }
            None => writeln!(f, "sessions: presence not labelled for this clip")?,
        }
        if self.transform != NONE {
            writeln!(f, "transform: {}", self.transform)?;
        }
        if self.gestures.is_empty() {
            writeln!(f, "gestures: none labelled, none detected")?;
        }
        for (kind, g) in &self.gestures {
            let fp = g
                .false_positives
                .map_or("n/a".to_string(), |n| n.to_string());
            let delay = if g.delays.is_empty() {
                "-".to_string()
            } else {
                let mean = g.delays.iter().sum::<f64>() / g.delays.len() as f64;
                format!("{mean:+.2} s")
            };
            writeln!(
                f,
                "gesture {kind}: matched {}, missed {}, false {fp}, mean delay after labelled end {delay}",
                g.matched, g.missed
            )?;
        }
        if !self.gestures.is_empty() {
            writeln!(f, "confusion (labelled × detected):")?;
            write!(f, "{}", self.confusion)?;
        }
        if let Some(latency) = &self.latency {
            writeln!(f, "{latency}")?;
        }
        writeln!(
            f,
            "false triggers (switch, photo or discard by mistake): {}",
            self.false_triggers
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorsight_contract::events::Side;

    fn ev(t: f64, kind: EventKind) -> Event {
        Event::new(t, kind)
    }

    #[test]
    fn sessions_match_one_to_one_with_boundary_errors() {
        let s = |id: &str| id.to_string();
        let events = vec![
            ev(6.5, EventKind::SessionStarted { session: s("a") }),
            ev(
                22.0,
                EventKind::SessionEnded {
                    session: s("a"),
                    reason: EndReason::Absent,
                    duration_s: 15.5,
                },
            ),
            ev(40.0, EventKind::SessionStarted { session: s("b") }),
            ev(
                43.0,
                EventKind::SessionEnded {
                    session: s("b"),
                    reason: EndReason::Absent,
                    duration_s: 3.0,
                },
            ),
        ];
        let score = score_sessions(&sessions(&events), &[[6.0, 20.2], [22.7, 30.0]], 2.0);
        assert_eq!((score.detected, score.labelled, score.matched), (2, 2, 1));
        assert_eq!(score.precision, 0.5);
        assert!((score.start_errors[0] - 0.5).abs() < 1e-9);
        assert!((score.end_errors[0] - (22.0 - 22.2)).abs() < 1e-9);
    }

    #[test]
    fn gestures_score_matches_misses_and_false_positives() {
        let labels: Labels = serde_json::from_str(
            r#"{"clip":"x","presence":null,"gestures":[
                {"kind":"swipe","motion":"image_left_to_right","start":1.0,"end":1.5},
                {"kind":"thumbs_up","start":3.0,"end":3.5}],
                "gestures_complete":true,"tolerance_s":0.5}"#,
        )
        .unwrap();
        let g = |t, gesture, motion| {
            ev(
                t,
                EventKind::Gesture {
                    session: "s".into(),
                    gesture,
                    motion,
                    direction: None,
                    hand: Side::Right,
                    confidence: 1.0,
                },
            )
        };
        let events = vec![
            g(1.7, GestureKind::Swipe, Some(SwipeMotion::ImageLeftToRight)),
            g(5.0, GestureKind::Swipe, Some(SwipeMotion::ImageRightToLeft)),
        ];
        let r = score_gestures(&events, &labels);
        let swipe = &r["swipe:image_left_to_right"];
        assert_eq!(
            (swipe.matched, swipe.missed, swipe.false_positives),
            (1, 0, Some(0))
        );
        assert!((swipe.delays[0] - 0.2).abs() < 1e-9);
        assert_eq!(r["thumbs_up"].missed, 1);
        assert_eq!(r["swipe:image_right_to_left"].false_positives, Some(1));

        let c = confusion(&events, &labels);
        assert_eq!(
            c.count("swipe:image_left_to_right", "swipe:image_left_to_right"),
            1
        );
        assert_eq!(c.count("thumbs_up", NONE), 1);
        assert_eq!(c.count(NONE, "swipe:image_right_to_left"), 1);
        assert_eq!(c.kinds.last().map(String::as_str), Some(NONE));
        assert_eq!(false_triggers(&events, &labels), 1);
        let table = c.to_string();
        assert!(table.contains("labelled \\ detected"), "{table}");
    }

    #[test]
    fn a_gesture_read_as_another_is_a_confusion_and_a_false_trigger() {
        let labels: Labels = serde_json::from_str(
            r#"{"clip":"x","presence":null,"gestures":[{"kind":"fist","start":1.0,"end":2.0}],
                "gestures_complete":false,"tolerance_s":0.5}"#,
        )
        .unwrap();
        let events = vec![ev(
            1.5,
            EventKind::Gesture {
                session: "s".into(),
                gesture: GestureKind::ThumbsUp,
                motion: None,
                direction: None,
                hand: Side::Left,
                confidence: 0.9,
            },
        )];
        let c = confusion(&events, &labels);
        assert_eq!(c.count("fist", "thumbs_up"), 1);
        // Incomplete labels: no false positives per kind, but a photo by mistake all the same.
        assert_eq!(false_triggers(&events, &labels), 1);
    }

    #[test]
    fn gesture_latency_adds_each_matched_events_processing_delay() {
        let labels: Labels = serde_json::from_str(
            r#"{"clip":"x","presence":null,"gestures":[
                {"kind":"thumbs_up","start":1.0,"end":2.0},
                {"kind":"thumbs_down","start":4.0,"end":5.0},
                {"kind":"thumbs_up","start":7.0,"end":8.0}],
                "gestures_complete":true,"tolerance_s":0.5}"#,
        )
        .unwrap();
        let g = |t, gesture| {
            ev(
                t,
                EventKind::Gesture {
                    session: "s".into(),
                    gesture,
                    motion: None,
                    direction: None,
                    hand: Side::Right,
                    confidence: 1.0,
                },
            )
        };
        // Event 1 is no gesture; event 3 is a false one (no processing delay counts for it).
        let events = vec![
            g(2.1, GestureKind::ThumbsUp),
            ev(3.0, EventKind::SourceEnded { frames: 1 }),
            g(4.9, GestureKind::ThumbsDown),
            g(6.0, GestureKind::ThumbsDown),
            g(8.3, GestureKind::ThumbsUp),
        ];
        let mut report = evaluate(&events, &labels, 1.0);
        let media = GestureLatency::of(&report, None).expect("three matches");
        assert!(!media.realtime);
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
        };
        assert!(close(&media.samples_s, &[-0.1, 0.1, 0.3]), "{media:?}");
        assert!((media.p50_s - 0.1).abs() < 1e-9 && (media.p95_s - 0.3).abs() < 1e-9);

        let processing = [0.02, 9.0, 0.5, 9.0, 0.04];
        let real = GestureLatency::of(&report, Some(&processing)).expect("three matches");
        assert!(real.realtime);
        assert!(close(&real.samples_s, &[0.12, 0.34, 0.4]), "{real:?}");
        assert!((real.max_s - 0.4).abs() < 1e-9);
        report.latency = Some(real);
        let text = report.to_string();
        assert!(
            text.contains("p50 +340 ms, p95 +400 ms, max +400 ms over 3 gestures"),
            "{text}"
        );
    }
}
