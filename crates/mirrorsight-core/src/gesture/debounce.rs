//! Turning per-frame shape readings into gestures that fire once.
//!
//! Two pieces: a [`ShapeRun`] follows one hand and decides when a shape has been held long
//! and steadily enough; a [`Latch`] per gesture makes sure a held shape fires once, and that
//! the same gesture cannot fire again before a cooldown and before the shape was let go.

use mirrorsight_contract::events::GestureKind;

use super::shape::ShapeReading;

/// What a run needs to fire; copied from the configuration per shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldRule {
    pub hold_s: f64,
    pub min_frames: u32,
    pub min_agreement: f64,
    pub min_confidence: f64,
    pub max_gap_s: f64,
    /// Wrist wander allowed during the hold, in palm lengths.
    pub max_motion: f64,
}

/// One hand holding one shape.
#[derive(Debug, Clone)]
pub struct ShapeRun {
    shape: GestureKind,
    start: f64,
    last_agree: f64,
    agree: u32,
    disagree: u32,
    consecutive_disagree: u32,
    conf_sum: f64,
    wrist_min: [f64; 2],
    wrist_max: [f64; 2],
    palm_sum: f64,
    fired: bool,
}

/// A run that qualified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    pub shape: GestureKind,
    pub confidence: f64,
    pub since: f64,
}

impl ShapeRun {
    /// A run of `shape`, which `r` shows.
    fn start(t: f64, shape: GestureKind, r: &ShapeReading) -> Self {
        Self {
            shape,
            start: t,
            last_agree: t,
            agree: 1,
            disagree: 0,
            consecutive_disagree: 0,
            conf_sum: r.confidence,
            wrist_min: r.wrist,
            wrist_max: r.wrist,
            palm_sum: r.palm,
            fired: false,
        }
    }

    pub fn shape(&self) -> GestureKind {
        self.shape
    }

    fn motion_palms(&self) -> f64 {
        let dx = self.wrist_max[0] - self.wrist_min[0];
        let dy = self.wrist_max[1] - self.wrist_min[1];
        dx.hypot(dy) / (self.palm_sum / f64::from(self.agree)).max(f64::EPSILON)
    }
}

/// Follows one hand's shape over frames.
#[derive(Debug, Clone, Default)]
pub struct ShapeTrack {
    run: Option<ShapeRun>,
}

impl ShapeTrack {
    pub fn run(&self) -> Option<&ShapeRun> {
        self.run.as_ref()
    }

    /// Feeds one frame: `reading` is `None` when this hand was not seen. Returns the shape
    /// when its run qualifies for the first time.
    pub fn update(
        &mut self,
        t: f64,
        reading: Option<&ShapeReading>,
        rule: impl Fn(GestureKind) -> HoldRule,
    ) -> Option<Held> {
        let Some(r) = reading else {
            if let Some(run) = &self.run
                && t - run.last_agree > rule(run.shape).max_gap_s
            {
                self.run = None;
            }
            return None;
        };
        // The run a reading can start: a shape shown confidently enough.
        let start = |r: &ShapeReading| {
            r.shape
                .filter(|&s| r.confidence >= rule(s).min_confidence)
                .map(|s| ShapeRun::start(t, s, r))
        };
        match &mut self.run {
            Some(run)
                if r.shape == Some(run.shape) && r.confidence >= rule(run.shape).min_confidence =>
            {
                let rl = rule(run.shape);
                run.agree += 1;
                run.consecutive_disagree = 0;
                run.last_agree = t;
                run.conf_sum += r.confidence;
                run.palm_sum += r.palm;
                for k in 0..2 {
                    run.wrist_min[k] = run.wrist_min[k].min(r.wrist[k]);
                    run.wrist_max[k] = run.wrist_max[k].max(r.wrist[k]);
                }
                if run.motion_palms() > rl.max_motion {
                    // A moving hand is not showing a shape; the hold restarts once it settles.
                    let fired = run.fired;
                    *run = ShapeRun::start(t, run.shape, r);
                    run.fired = fired;
                }
            }
            Some(run) => {
                run.disagree += 1;
                run.consecutive_disagree += 1;
                let gap = t - run.last_agree > rule(run.shape).max_gap_s;
                // One odd frame is tolerated (blur, a landmark glitch); two in a row end the run.
                if run.consecutive_disagree >= 2 || gap {
                    self.run = start(r);
                }
            }
            None => {
                self.run = start(r);
            }
        }
        let run = self.run.as_mut()?;
        let rl = rule(run.shape);
        let seen = run.agree + run.disagree;
        let confidence = run.conf_sum / f64::from(run.agree);
        let qualifies = !run.fired
            && run.agree >= rl.min_frames
            && run.last_agree - run.start >= rl.hold_s - 1e-9
            && f64::from(run.agree) >= rl.min_agreement * f64::from(seen)
            && confidence >= rl.min_confidence;
        if qualifies {
            run.fired = true;
            Some(Held {
                shape: run.shape,
                confidence,
                since: run.start,
            })
        } else {
            None
        }
    }
}

/// Fire-once and cooldown for one gesture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latch {
    last_fire: f64,
    last_seen: f64,
    armed: bool,
}

impl Default for Latch {
    fn default() -> Self {
        Self {
            last_fire: f64::NEG_INFINITY,
            last_seen: f64::NEG_INFINITY,
            armed: true,
        }
    }
}

impl Latch {
    /// Call every frame with whether the gesture's shape is visible on any hand.
    pub fn observe(&mut self, t: f64, seen: bool, release_s: f64) {
        if seen {
            self.last_seen = t;
        } else if !self.armed && t - self.last_seen >= release_s {
            self.armed = true;
        }
    }

    pub fn ready(&self, t: f64, cooldown_s: f64) -> bool {
        self.armed && t - self.last_fire >= cooldown_s
    }

    pub fn fire(&mut self, t: f64) {
        self.armed = false;
        self.last_fire = t;
        self.last_seen = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(shape: Option<GestureKind>, confidence: f64, x: f64) -> ShapeReading {
        ShapeReading {
            shape,
            confidence,
            scores: [0.0; 6],
            extended: [0.0; 5],
            flat: 0.0,
            palm: 50.0,
            wrist: [x, 100.0],
            finger_angle_deg: 0.0,
            palm_turn: 0.0,
            finger_spread_deg: 0.0,
        }
    }

    fn rule(_: GestureKind) -> HoldRule {
        HoldRule {
            hold_s: 0.25,
            min_frames: 3,
            min_agreement: 0.75,
            min_confidence: 0.6,
            max_gap_s: 0.25,
            max_motion: 1.0,
        }
    }

    /// Feeds readings at 20 fps; returns the times at which something fired.
    fn feed(readings: &[Option<ShapeReading>]) -> Vec<(f64, GestureKind)> {
        let mut track = ShapeTrack::default();
        let mut fired = Vec::new();
        for (i, r) in readings.iter().enumerate() {
            let t = i as f64 * 0.05;
            if let Some(h) = track.update(t, r.as_ref(), rule) {
                fired.push(((t * 100.0).round() / 100.0, h.shape));
            }
        }
        fired
    }

    #[test]
    fn steady_shape_fires_once_after_the_hold() {
        let r = Some(reading(Some(GestureKind::ThumbsUp), 0.9, 100.0));
        assert_eq!(feed(&vec![r; 40]), vec![(0.25, GestureKind::ThumbsUp)]);
    }

    #[test]
    fn single_glitch_frames_are_tolerated_but_flicker_is_not() {
        let up = Some(reading(Some(GestureKind::ThumbsUp), 0.9, 100.0));
        let none = Some(reading(None, 0.9, 100.0));
        let mut seq = vec![up.clone(); 3];
        seq.push(none.clone());
        seq.extend(vec![up.clone(); 4]);
        assert_eq!(feed(&seq), vec![(0.25, GestureKind::ThumbsUp)]);

        let flicker: Vec<_> = (0..40)
            .map(|i| if i % 2 == 0 { up.clone() } else { none.clone() })
            .collect();
        assert_eq!(feed(&flicker), vec![]);
        let two_shapes: Vec<_> = (0..40)
            .map(|i| {
                Some(reading(
                    if i % 2 == 0 {
                        Some(GestureKind::ThumbsUp)
                    } else {
                        Some(GestureKind::ThumbsDown)
                    },
                    0.9,
                    100.0,
                ))
            })
            .collect();
        assert_eq!(feed(&two_shapes), vec![]);
    }

    #[test]
    fn low_confidence_and_moving_hands_do_not_count() {
        assert_eq!(
            feed(&vec![
                Some(reading(Some(GestureKind::Fist), 0.55, 100.0));
                40
            ]),
            vec![]
        );
        // Half a palm per frame: a hand in motion.
        let moving: Vec<_> = (0..40)
            .map(|i| {
                Some(reading(
                    Some(GestureKind::Fist),
                    0.9,
                    100.0 + 25.0 * i as f64,
                ))
            })
            .collect();
        assert_eq!(feed(&moving), vec![]);
    }

    #[test]
    fn a_gap_longer_than_allowed_restarts_the_hold() {
        let up = Some(reading(Some(GestureKind::ThumbsUp), 0.9, 100.0));
        let mut seq = vec![up.clone(); 4];
        seq.extend(vec![None; 6]);
        seq.extend(vec![up.clone(); 6]);
        assert_eq!(feed(&seq), vec![(0.75, GestureKind::ThumbsUp)]);
    }

    #[test]
    fn latch_needs_release_and_cooldown() {
        let mut l = Latch::default();
        assert!(l.ready(0.0, 1.5));
        l.fire(0.0);
        l.observe(0.5, true, 0.5);
        assert!(!l.ready(2.0, 1.5), "still held");
        l.observe(2.0, true, 0.5);
        l.observe(2.3, false, 0.5);
        assert!(!l.ready(2.3, 1.5), "released only 0.3 s ago");
        l.observe(2.6, false, 0.5);
        assert!(l.ready(2.6, 1.5));
    }
}
