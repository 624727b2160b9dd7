//! Who is at the mirror: the people the body detector finds, followed from one detection to
//! the next, and the shopper among them.
//!
//! A session starts only for someone who **stops** in front of the mirror and is **close
//! enough**: a person followed over several detections whose sideways speed, in their own body
//! heights per second, stays below `presence.stopped_max_speed`, and whose body spans at least
//! `presence.min_height_fraction` of the picture. People walking past, near or far, never
//! qualify however long they are in view. Speeds are relative to the body and to media time,
//! so a small far person and a large near one, on a 10 or a 30 fps camera, are judged alike.
//!
//! With several people in view the shopper is the one nearest the mirror: the largest, with
//! people near the middle of the picture preferred over people at its edge. Once chosen, the
//! shopper is kept while they are in view (they may move about in front of the mirror), so
//! someone walking behind them never takes the session over.
//!
//! A person the detector is unsure of must also have **arrived**: they count once the picture
//! has changed over their torso in a frame where the detector found them (walking in, turning,
//! shifting their weight). A bar table or a coat stand that the detector takes for a person in
//! a dim, grainy picture (scores of 0.6–0.75, found in a third of its runs) never moves, so it
//! never qualifies, however still it stands, while a shopper walking in is not kept waiting.
//! "Changed" is measured against the picture's own noise, so a grainy camera does not make
//! everything move. A confident detection needs no such proof (someone already sitting still
//! in front of the camera when it starts is a shopper), nor does a figure the detector finds
//! steadily, run after run, for two seconds: false people flicker.
//!
//! Also decided here: how often the detector must run (rarely on a still, empty scene; often
//! while something moves or a session is open), and "moving on": a shopper walking out of the
//! frame is lost by the detector before they are gone, so motion around where they were last
//! seen keeps them present for at most `presence.motion_grace_s`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::observation::{MotionGrid, Person};
use crate::{ConfigError, Section};

/// `[presence]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Minimum body-detector score for a person.
    pub min_score: f32,
    /// A person counts only if their body spans at least this fraction of the frame height
    /// (how near the mirror they stand).
    pub min_height_fraction: f32,
    /// A person counts as stopped while their sideways speed stays below this many of their
    /// own body heights per second (walking past is 0.5–1; a shopper turning in front of the
    /// mirror, well under 0.2).
    pub stopped_max_speed: f64,
    /// Detector period while something moves or a session is open (seconds of media time).
    pub active_interval_s: f64,
    /// Detector period while the scene is still and nobody is there.
    pub idle_interval_s: f64,
    /// Detector period inside a session while the body landmarks follow the shopper
    /// confidently (they already show the shopper is there).
    pub tracked_interval_s: f64,
    /// Mean absolute difference (0..255) of a coarse grey thumbnail that counts as motion.
    pub motion_threshold: f32,
    /// After the last detection, motion around the shopper keeps them present this long.
    pub motion_grace_s: f64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            min_score: 0.6,
            min_height_fraction: 0.3,
            stopped_max_speed: 0.5,
            active_interval_s: 0.1,
            idle_interval_s: 1.0,
            tracked_interval_s: 0.3,
            motion_threshold: 2.0,
            motion_grace_s: 1.5,
        }
    }
}

impl PresenceConfig {
    /// Checks every value; the error names the full key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = Section("presence");
        section.fraction("min_score", f64::from(self.min_score))?;
        section.fraction("min_height_fraction", f64::from(self.min_height_fraction))?;
        section.positive("stopped_max_speed", self.stopped_max_speed)?;
        section.positive("active_interval_s", self.active_interval_s)?;
        section.positive("idle_interval_s", self.idle_interval_s)?;
        section.positive("tracked_interval_s", self.tracked_interval_s)?;
        if self.idle_interval_s < self.active_interval_s {
            return Err(section.error("idle_interval_s", "must be >= presence.active_interval_s"));
        }
        section.non_negative("motion_grace_s", self.motion_grace_s)?;
        section.non_negative("motion_threshold", f64::from(self.motion_threshold))?;
        Ok(())
    }
}

/// The shopper is in view: since when they have counted as standing at the mirror, and when
/// they were last seen (a missed detection or two is not an absence).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    pub since: f64,
    pub last_seen: f64,
}

/// A detection this old no longer belongs to a track.
const TRACK_MEMORY_S: f64 = 1.0;
/// A detection within this share of a body height of a track's last position is that person.
const SAME_PERSON_HEIGHTS: f32 = 0.5;
/// ... and at least this share of its size: nobody halves or doubles in a tenth of a
/// second, so a small figure found where the shopper just walked out of the picture (a
/// mannequin, a table the detector takes for a person) is someone else, never the shopper
/// still in view.
const SAME_PERSON_SIZE_RATIO: f32 = 0.5;
/// Sideways speed is the slope of the hip centre over this much of the recent past.
const STILL_WINDOW_S: f64 = 0.6;
/// A track must be this old before its speed means anything (two or three detections).
const MIN_TRACK_AGE_S: f64 = 0.18;
/// A detection or two missed this long does not break presence.
const PRESENCE_GAP_S: f64 = 0.35;
/// Another person takes over as shopper only when this much more prominent.
const TAKEOVER_RATIO: f32 = 1.5;
/// Motion keeps the detector at its active rate for this long after the last change.
const MOTION_HOLD_S: f64 = 1.0;
/// A person has moved when the mean change over their torso's cells exceeds this many times
/// the picture's quiet level (the lowest tenth of this frame's cell changes): sensor noise of
/// standard deviation σ changes a cell by 0.8σ on average (less spread over several cells)
/// but a tenth of the cells by under 0.13σ, so twelve times that (1.5σ) is above the noise,
/// and a person moving (tens of grey levels) is far above it.
const ARRIVAL_NOISE_FACTOR: f32 = 12.0;
/// A detection this sure is a person without proof of movement. People the detector sees
/// clearly score 0.9 and more, in dim and grainy pictures too, except while they walk in
/// half-hidden (0.6–0.75, and moving); the false people of a grainy picture stay under 0.75.
const CONFIDENT_SCORE: f32 = 0.8;
/// ... nor does a figure found in at least this share of the detector's runs for this long:
/// the false people of a grainy picture flicker (found in 40 % of the runs, at most 70 % over
/// any two seconds), a real person, however still, does not.
const STEADY_S: f64 = 2.0;
const STEADY_SHARE: f64 = 0.9;

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    /// The picture changed over their torso in a frame where they were found (see the
    /// module's notes).
    arrived: bool,
    /// When the detector first found them, and how many of its runs since did (and did not).
    created: f64,
    runs_seen: u32,
    runs_missed: u32,
    first_large: Option<f64>,
    last_seen: f64,
    /// (t, hip x, body height) of recent detections, oldest first.
    samples: VecDeque<(f64, f32, f32)>,
    last: Person,
    /// Since when this person has counted as standing at the mirror.
    qualifying_since: Option<f64>,
}

impl Track {
    /// Sideways speed in body heights per second over the recent past (a least-squares
    /// slope, so one jittery detection does not make a standing person walk).
    fn sideways_speed(&self, t: f64) -> Option<f64> {
        let recent: Vec<(f64, f64, f64)> = self
            .samples
            .iter()
            .filter(|s| t - s.0 <= STILL_WINDOW_S + 1e-9)
            .map(|&(st, x, h)| (st, f64::from(x), f64::from(h)))
            .collect();
        if recent.len() < 2 {
            return None;
        }
        let n = recent.len() as f64;
        let mt = recent.iter().map(|s| s.0).sum::<f64>() / n;
        let mx = recent.iter().map(|s| s.1).sum::<f64>() / n;
        let (num, den) = recent.iter().fold((0.0, 0.0), |(a, b), s| {
            (a + (s.0 - mt) * (s.1 - mx), b + (s.0 - mt).powi(2))
        });
        let mut heights: Vec<f64> = recent.iter().map(|s| s.2).collect();
        heights.sort_by(f64::total_cmp);
        let height = heights[heights.len() / 2].max(1.0);
        (den > 1e-9).then(|| (num / den).abs() / height)
    }

    fn age(&self, t: f64) -> f64 {
        self.samples.front().map_or(0.0, |s| t - s.0)
    }
}

/// The middle of a person's body circle (the torso, pixels): where a person who arrived has
/// moved, and where someone merely walking past in front of a still object has not lingered
/// once the object is found again.
fn core(p: &Person) -> [f32; 4] {
    let [cx, cy] = p.center;
    let half = 0.5 * p.radius;
    [cx - half, cy - half, cx + half, cy + half]
}

/// The change (0..255) that counts as movement in a region of this frame's motion grid:
/// above `motion_threshold` and [`ARRIVAL_NOISE_FACTOR`] times the picture's quiet level.
/// `None` without a grid (no motion information: everyone counts as arrived).
fn moving_level(motion: &MotionGrid, motion_threshold: f32) -> Option<f32> {
    let cells = motion.columns * motion.rows;
    if cells == 0 || motion.change.len() != cells {
        return None;
    }
    let mut sorted = motion.change.clone();
    let (_, quiet, _) = sorted.select_nth_unstable_by(cells / 10, f32::total_cmp);
    Some(motion_threshold.max(ARRIVAL_NOISE_FACTOR * *quiet))
}

/// People followed across detections, the shopper among them, and the detector's schedule.
#[derive(Debug, Clone)]
pub struct PresenceTracker {
    config: PresenceConfig,
    tracks: Vec<Track>,
    next_id: u64,
    shopper: Option<u64>,
    /// The shopper as last detected, and when.
    last_shopper: Option<(f64, Person)>,
    last_run: Option<f64>,
    last_motion: f64,
    frame: [u32; 2],
}

impl PresenceTracker {
    /// `config` should have passed [`PresenceConfig::validate`].
    pub fn new(config: PresenceConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 0,
            shopper: None,
            last_shopper: None,
            last_run: None,
            last_motion: f64::NEG_INFINITY,
            frame: [0, 0],
        }
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    /// Should the detector run on the frame at `t`? `busy`: the session tracker wants
    /// evidence (a candidate or an open session); `followed`: the body landmarks follow the
    /// shopper confidently, so a detection now and then is enough.
    pub fn detection_due(
        &mut self,
        t: f64,
        motion: &MotionGrid,
        busy: bool,
        followed: bool,
    ) -> bool {
        if motion.mean() >= self.config.motion_threshold {
            self.last_motion = t;
        }
        let busy = busy || !self.tracks.is_empty() || t - self.last_motion < MOTION_HOLD_S;
        let interval = if followed {
            self.config.tracked_interval_s
        } else if busy {
            self.config.active_interval_s
        } else {
            self.config.idle_interval_s
        };
        let due = self
            .last_run
            .is_none_or(|last| t - last >= interval - 1e-6 || t < last);
        if due {
            self.last_run = Some(t);
        }
        due
    }

    /// One detector run: the people found in a frame of `frame` pixels at media time `t`.
    /// `in_session`: a session is open (its shopper may move about; a new one must stop).
    /// Returns whether the shopper is in view.
    pub fn observe(
        &mut self,
        t: f64,
        frame: [u32; 2],
        people: &[Person],
        motion: &MotionGrid,
        in_session: bool,
    ) -> Option<Sighting> {
        self.frame = frame;
        self.follow(t, people);
        let large = |p: &Person| p.height_fraction(frame) >= self.config.min_height_fraction;
        let moving = moving_level(motion, self.config.motion_threshold);
        for track in &mut self.tracks {
            let seen_now = track.last_seen == t;
            if seen_now {
                track.runs_seen += 1;
            } else {
                track.runs_missed += 1;
            }
            // Found in (nearly) every run for a while: a steady figure, such as a still
            // photograph of people, not the flicker of a false detection in a grainy picture.
            let steady = t - track.created >= STEADY_S
                && f64::from(track.runs_seen)
                    >= STEADY_SHARE * f64::from(track.runs_seen + track.runs_missed);
            if seen_now && !track.arrived {
                track.arrived = track.last.score >= CONFIDENT_SCORE
                    || steady
                    || moving.is_none_or(|level| {
                        let [x0, y0, x1, y1] = core(&track.last);
                        let (w, h) = (frame[0].max(1) as f32, frame[1].max(1) as f32);
                        motion.change_in([x0 / w, y0 / h, x1 / w, y1 / h]) > level
                    });
            }
            if seen_now && large(&track.last) {
                track.first_large.get_or_insert(t);
            } else if seen_now {
                // Too far away (or mostly out of the picture) just now.
                track.first_large = None;
            }
            let stopped = track.age(t) >= MIN_TRACK_AGE_S
                && track
                    .sideways_speed(t)
                    .is_some_and(|v| v <= self.config.stopped_max_speed);
            let qualifies = seen_now && track.first_large.is_some() && stopped && track.arrived;
            if qualifies {
                // Standing since they came close, or, if they walked about in view first,
                // since the still window began.
                let still_from = if track.age(t) > STILL_WINDOW_S {
                    t - STILL_WINDOW_S
                } else {
                    f64::NEG_INFINITY
                };
                let since = track.first_large.unwrap_or(t).max(still_from);
                track.qualifying_since.get_or_insert(since);
            } else if seen_now {
                track.qualifying_since = None;
            }
        }
        self.choose_shopper(t, in_session);
        let shopper = self
            .shopper
            .and_then(|id| self.tracks.iter().find(|tr| tr.id == id));
        if let Some(track) = shopper
            && t - track.last_seen <= PRESENCE_GAP_S
        {
            self.last_shopper = Some((track.last_seen, track.last.clone()));
            let since = track
                .qualifying_since
                .or(track.first_large.filter(|_| in_session))
                .unwrap_or(track.last_seen);
            return Some(Sighting {
                since,
                last_seen: track.last_seen,
            });
        }
        if in_session && self.moving_on(t, motion) {
            return Some(Sighting {
                since: t,
                last_seen: t,
            });
        }
        None
    }

    /// The shopper's body as last detected, if seen within `max_age_s`.
    pub fn shopper(&self, t: f64, max_age_s: f64) -> Option<&Person> {
        self.last_shopper
            .as_ref()
            .filter(|(seen, _)| t - seen <= max_age_s)
            .map(|(_, p)| p)
    }

    /// Forget the shopper (their session ended): the next one is chosen afresh.
    pub fn session_ended(&mut self) {
        self.shopper = None;
        self.last_shopper = None;
    }

    /// Matches this run's detections to the tracks, nearest first.
    fn follow(&mut self, t: f64, people: &[Person]) {
        self.tracks
            .retain(|tr| t - tr.last_seen <= TRACK_MEMORY_S && tr.last_seen <= t);
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (pi, p) in people.iter().enumerate() {
            for (ti, tr) in self.tracks.iter().enumerate() {
                let d = ((p.center[0] - tr.last.center[0]).powi(2)
                    + (p.center[1] - tr.last.center[1]).powi(2))
                .sqrt();
                let height = p.diameter().max(tr.last.diameter()).max(1.0);
                let size_ratio = p.diameter().min(tr.last.diameter()) / height;
                if d <= SAME_PERSON_HEIGHTS * height && size_ratio >= SAME_PERSON_SIZE_RATIO {
                    pairs.push((d, pi, ti));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut person_done = vec![false; people.len()];
        let mut track_done = vec![false; self.tracks.len()];
        for (_, pi, ti) in pairs {
            if person_done[pi] || track_done[ti] {
                continue;
            }
            person_done[pi] = true;
            track_done[ti] = true;
            let track = &mut self.tracks[ti];
            track.last = people[pi].clone();
            track.last_seen = t;
            track
                .samples
                .push_back((t, people[pi].center[0], people[pi].diameter()));
            while track
                .samples
                .front()
                .is_some_and(|s| t - s.0 > STILL_WINDOW_S + TRACK_MEMORY_S)
            {
                track.samples.pop_front();
            }
        }
        for (pi, p) in people.iter().enumerate() {
            if !person_done[pi] {
                self.tracks.push(Track {
                    id: self.next_id,
                    arrived: false,
                    created: t,
                    runs_seen: 0,
                    runs_missed: 0,
                    first_large: None,
                    last_seen: t,
                    samples: VecDeque::from([(t, p.center[0], p.diameter())]),
                    last: p.clone(),
                    qualifying_since: None,
                });
                self.next_id += 1;
            }
        }
    }

    /// How near the mirror a person seems: their size, discounted towards the picture's edges.
    fn prominence(&self, p: &Person) -> f32 {
        let w = self.frame[0].max(1) as f32;
        let off_centre = ((p.center[0] / w) - 0.5).abs().min(0.5) * 2.0;
        p.height_fraction(self.frame) * (1.0 - 0.5 * off_centre)
    }

    fn choose_shopper(&mut self, t: f64, in_session: bool) {
        let current = self
            .shopper
            .and_then(|id| self.tracks.iter().find(|tr| tr.id == id))
            .filter(|tr| t - tr.last_seen <= PRESENCE_GAP_S);
        let best = self
            .tracks
            .iter()
            .filter(|tr| tr.qualifying_since.is_some() && tr.last_seen == t)
            .max_by(|a, b| {
                self.prominence(&a.last)
                    .total_cmp(&self.prominence(&b.last))
            });
        self.shopper = match (current, best) {
            (Some(cur), Some(b))
                if b.id != cur.id
                    && !in_session
                    && self.prominence(&b.last) > TAKEOVER_RATIO * self.prominence(&cur.last) =>
            {
                Some(b.id)
            }
            // Inside a session the shopper keeps the mirror while in view.
            (Some(cur), _) if in_session || cur.qualifying_since.is_some() => Some(cur.id),
            (_, Some(b)) => Some(b.id),
            _ => None,
        };
    }

    /// Motion next to where the shopper was last seen, shortly after: they are walking out
    /// and the detector already lost them.
    fn moving_on(&self, t: f64, motion: &MotionGrid) -> bool {
        let Some((seen, person)) = &self.last_shopper else {
            return false;
        };
        if t - seen > self.config.motion_grace_s {
            return false;
        }
        let (w, h) = (self.frame[0].max(1) as f32, self.frame[1].max(1) as f32);
        let r = person.region(self.frame);
        let r = [r[0] / w, r[1] / h, r[2] / w, r[3] / h];
        let half = (r[2] - r[0]) * 0.5;
        let around = [r[0] - half, r[1], r[2] + half, r[3]];
        motion.change_in(around) >= self.config.motion_threshold * 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u32; 2] = [640, 480];

    /// A person whose body is `height` pixels tall, hips at (x, 300).
    fn person(x: f32, height: f32) -> Person {
        Person {
            score: 0.9,
            center: [x, 300.0],
            radius: height / 2.0,
            top: [x, 300.0 - height / 2.0],
        }
    }

    /// Runs detections every 0.1 s from `from` to `to` with `people(t)`; returns the sightings.
    fn run(
        tracker: &mut PresenceTracker,
        from: f64,
        to: f64,
        in_session: bool,
        people: impl Fn(f64) -> Vec<Person>,
    ) -> Vec<(f64, Option<Sighting>)> {
        let still = MotionGrid::default();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let t = from + f64::from(i) * 0.1;
            if t > to + 1e-9 {
                break;
            }
            out.push((t, tracker.observe(t, FRAME, &people(t), &still, in_session)));
            i += 1;
        }
        out
    }

    #[test]
    fn someone_who_stops_counts_from_when_they_came_close() {
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        // Walks in (fast) for 0.5 s, then stands.
        let seen = run(&mut tr, 0.0, 3.0, false, |t| {
            vec![person(100.0 + 400.0 * t.min(0.5) as f32, 300.0)]
        });
        let first = seen.iter().find(|(_, s)| s.is_some()).expect("qualifies");
        assert!(first.0 <= 1.3, "stood still from 0.5 s: {first:?}");
        let since = first.1.map(|s| s.since).unwrap_or_default();
        assert!((0.0..=0.8).contains(&since), "{since}");
        assert!(seen.last().is_some_and(|(_, s)| s.is_some()));
    }

    #[test]
    fn walking_past_never_counts_near_or_far_fast_or_slow() {
        for (height, speed_heights) in
            [(300.0f32, 0.7f32), (150.0, 0.7), (300.0, 0.6), (450.0, 1.0)]
        {
            let mut tr = PresenceTracker::new(PresenceConfig::default());
            let v = speed_heights * height;
            let seen = run(&mut tr, 0.0, 4.0, false, |t| {
                vec![person(-100.0 + v * t as f32, height)]
            });
            assert!(
                seen.iter().all(|(_, s)| s.is_none()),
                "{height} px at {speed_heights} heights/s: {seen:?}"
            );
        }
    }

    /// A 32×24 motion grid with sensor noise everywhere (each cell the absolute value of a
    /// seeded Gaussian of standard deviation `sigma`, a fresh draw per `seed`) and `moving` in
    /// the cells covering `region` (pixels of [`FRAME`]).
    fn grid(sigma: f32, seed: u64, moving: Option<([f32; 4], f32)>) -> MotionGrid {
        let (columns, rows) = (32, 24);
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut change: Vec<f32> = (0..columns * rows)
            .map(|_| {
                // Box–Muller.
                let (u, v) = (uniform(), uniform());
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                (z.abs() as f32) * sigma
            })
            .collect();
        if let Some((r, level)) = moving {
            for y in 0..rows {
                for x in 0..columns {
                    let (px, py) = (
                        (x as f32 + 0.5) * FRAME[0] as f32 / columns as f32,
                        (y as f32 + 0.5) * FRAME[1] as f32 / rows as f32,
                    );
                    if (r[0]..=r[2]).contains(&px) && (r[1]..=r[3]).contains(&py) {
                        change[y * columns + x] = level;
                    }
                }
            }
        }
        MotionGrid {
            columns,
            rows,
            change,
        }
    }

    /// Frames every 0.05 s, a detection every 0.1 s, with this frame's motion grid.
    fn run_with_motion(
        tracker: &mut PresenceTracker,
        from: f64,
        to: f64,
        people: impl Fn(f64) -> Vec<Person>,
        motion: impl Fn(f64) -> MotionGrid,
    ) -> Vec<(f64, Option<Sighting>)> {
        let mut out = Vec::new();
        for i in 0.. {
            let t = from + f64::from(i) * 0.05;
            if t > to + 1e-9 {
                break;
            }
            let m = motion(t);
            tracker.detection_due(t, &m, true, false);
            if i % 2 == 0 {
                out.push((t, tracker.observe(t, FRAME, &people(t), &m, false)));
            }
        }
        out
    }

    #[test]
    fn something_person_shaped_that_never_moved_never_counts_in_a_noisy_picture() {
        // A table the detector takes for a person in a grainy, dim picture (a weak score,
        // found in one run of three): where it stands, large enough, perfectly still; sensor noise changes every
        // cell by about 2 grey levels on average (above `motion_threshold`), some by 6.
        // `movement`: a region of the picture that changes by a level until a time.
        let figure = Person {
            score: 0.7,
            ..person(320.0, 300.0)
        };
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        let mut watch = |from: f64, to: f64, movement: Option<([f32; 4], f32, f64)>| {
            run_with_motion(
                &mut tr,
                from,
                to,
                |t| {
                    let run = (t * 10.0).round() as i64;
                    if run % 3 == 0 {
                        vec![figure.clone()]
                    } else {
                        vec![]
                    }
                },
                |t| {
                    let moving = movement
                        .filter(|m| t < m.2)
                        .map(|(region, level, _)| (region, level));
                    grid(2.5, (t * 100.0) as u64, moving)
                },
            )
        };
        let still = watch(0.0, 5.0, None);
        assert!(still.iter().all(|(_, s)| s.is_none()), "{still:?}");
        // Someone walking past in front of it, beside its torso, changes nothing either
        // once it is found again.
        let beside = watch(5.05, 7.0, Some(([20.0, 0.0, 200.0, 480.0], 30.0, 6.0)));
        assert!(beside.iter().all(|(_, s)| s.is_none()), "{beside:?}");
        // The control: the same figure once it moves (a shopper shifting their weight)
        // counts, at once.
        let moved = watch(7.05, 8.5, Some((core(&figure), 12.0, 7.6)));
        let first = moved
            .iter()
            .find(|(_, s)| s.is_some())
            .expect("moved: counts");
        assert!(first.0 <= 7.7, "{first:?}");
    }

    #[test]
    fn a_weak_but_steady_figure_counts_after_two_seconds() {
        // A still photograph of people (scores of 0.75, found in every run): no movement
        // ever, but no flicker either.
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        let seen = run_with_motion(
            &mut tr,
            0.0,
            3.0,
            |_| {
                vec![Person {
                    score: 0.75,
                    ..person(320.0, 300.0)
                }]
            },
            |t| grid(2.5, (t * 100.0) as u64, None),
        );
        let first = seen
            .iter()
            .find(|(_, s)| s.is_some())
            .expect("steady: counts");
        assert!((2.0..=2.3).contains(&first.0), "{first:?}");
    }

    #[test]
    fn someone_seen_clearly_sitting_still_from_the_start_counts_without_moving() {
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        let seen = run_with_motion(
            &mut tr,
            0.0,
            2.0,
            |_| vec![person(320.0, 300.0)],
            |t| grid(2.5, (t * 100.0) as u64, None),
        );
        let first = seen
            .iter()
            .find(|(_, s)| s.is_some())
            .expect("a clear person counts");
        assert!(first.0 <= 0.5, "{first:?}");
    }

    #[test]
    fn someone_far_away_never_counts() {
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        let seen = run(&mut tr, 0.0, 3.0, false, |_| vec![person(320.0, 100.0)]);
        assert!(seen.iter().all(|(_, s)| s.is_none()));
    }

    #[test]
    fn a_missed_detection_is_not_an_absence() {
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        let seen = run(&mut tr, 0.0, 2.0, false, |t| {
            if (1.05..1.25).contains(&t) {
                vec![]
            } else {
                vec![person(320.0, 300.0)]
            }
        });
        let gap: Vec<_> = seen
            .iter()
            .filter(|(t, _)| (1.05..1.25).contains(t))
            .collect();
        assert!(!gap.is_empty());
        for (_, s) in gap {
            let s = s.expect("still present through two missed detections");
            assert!(s.last_seen <= 1.0 + 1e-9 && s.since <= 0.1);
        }
    }

    #[test]
    fn the_shopper_is_the_nearest_and_keeps_the_mirror_in_a_session() {
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        // A large person in the middle and a smaller one at the side, both standing.
        run(&mut tr, 0.0, 1.0, false, |_| {
            vec![person(560.0, 200.0), person(320.0, 350.0)]
        });
        assert_eq!(tr.shopper(1.0, 0.5).map(|p| p.center[0]), Some(320.0));
        // A bigger person walks in behind during the session: the shopper stays.
        run(&mut tr, 1.1, 2.0, true, |t| {
            vec![person(320.0, 350.0), person(100.0 + 50.0 * t as f32, 420.0)]
        });
        assert_eq!(tr.shopper(2.0, 0.5).map(|p| p.center[0]), Some(320.0));
    }

    #[test]
    fn the_detector_runs_rarely_on_a_still_empty_scene() {
        let mut tr = PresenceTracker::new(PresenceConfig::default());
        let still = MotionGrid::default();
        let runs = (0..100)
            .filter(|i| tr.detection_due(f64::from(*i) * 0.05, &still, false, false))
            .count();
        assert_eq!(runs, 5, "once a second over 5 s");
        let moving = MotionGrid {
            columns: 1,
            rows: 1,
            change: vec![10.0],
        };
        let runs = (100..120)
            .filter(|i| tr.detection_due(f64::from(*i) * 0.05, &moving, false, false))
            .count();
        assert_eq!(runs, 10, "every 0.1 s while something moves");
    }

    #[test]
    fn config_errors_name_the_key() {
        let c = PresenceConfig {
            stopped_max_speed: 0.0,
            ..PresenceConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "presence.stopped_max_speed");
        assert!(PresenceConfig::default().validate().is_ok());
    }
}
