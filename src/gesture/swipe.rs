//! Horizontal swipes from the shopper's wrist trajectories.
//!
//! The pose model's wrist is the primary signal: it is found in nearly every frame, while the
//! hand-landmark model loses the hand in the motion blur of a fast stroke. Each arm's wrist
//! path is cut into strokes (runs that keep one horizontal direction); a stroke is judged once,
//! when it ends (the wrist turns back, stops, or is lost). A swipe is a stroke that
//!
//! - covers `swipe_min_travel` of the frame width within `swipe_max_duration_s`,
//! - stays roughly level (vertical extent small against the travel),
//! - is made with the hand raised (at or above a line just under the shoulders),
//! - is the wrist moving, not the whole body (the shoulders stay put),
//! - is not the return stroke of the previous swipe (opposite direction, starting within
//!   `swipe_refractory_s` of its end), and
//! - optionally: ends with an open, flat hand seen by the hand model near the wrist.
//!
//! The return stroke of a swipe is the classic false trigger; it is lower (across the chest),
//! made with a relaxed hand, and starts right after the swipe, so three independent rules
//! reject it.

use std::collections::VecDeque;

use mirrorsight_contract::events::SwipeMotion;

use super::config::GestureConfig;
use super::shape::ramp;

/// One reliable wrist position, with the body reference of the same frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WristSample {
    pub t: f64,
    pub x: f64,
    pub y: f64,
    /// Shoulder line, centre and width in pixels, when both shoulders are seen.
    pub body: Option<BodyRef>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyRef {
    pub shoulder_y: f64,
    pub center_x: f64,
    pub shoulder_width: f64,
}

/// A hand the landmark model saw, for confirming a stroke's end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandSighting {
    pub t: f64,
    pub wrist: [f64; 2],
    /// Open/flat-hand membership (see [`super::shape::ShapeReading::flat`]).
    pub flat: f64,
}

/// A swipe that passed every rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Swipe {
    /// 0 = the pose model's left arm, 1 = its right arm.
    pub arm: usize,
    pub motion: SwipeMotion,
    pub start: f64,
    pub end: f64,
    /// Travel as a fraction of the frame width.
    pub travel: f64,
    pub confidence: f64,
}

/// Why a stroke did not become a swipe (for tuning and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Short,
    TooFewPoints,
    Jump,
    Vertical,
    NoBody,
    Low,
    BodyMoved,
    ReturnStroke,
    TooSoon,
    NotConfirmed,
}

/// Decisions about strokes, for offline tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct StrokeVerdict {
    pub arm: usize,
    pub dir: i8,
    pub start: f64,
    pub end: f64,
    pub travel: f64,
    /// Median wrist height below the shoulder line, in shoulder widths.
    pub below_shoulder: Option<f64>,
    pub result: Result<(), Rejection>,
}

/// Points per arm kept for a stroke; at 60 fps that is 2 s, longer strokes are not swipes.
const MAX_STROKE_POINTS: usize = 120;
/// Movement that starts a stroke, as a fraction of the frame width.
const START_EPS: f64 = 0.02;
/// Backward movement that ends a stroke (the wrist turned back), fraction of the frame width.
const REVERSAL_EPS: f64 = 0.05;
/// No new extreme for this long: the stroke has stopped.
const STALL_S: f64 = 0.2;
/// No reliable wrist for this long: the stroke is over.
const MAX_GAP_S: f64 = 0.3;
/// No single frame-to-frame step may carry more than this share of a swipe's travel: a
/// landmark jumping (left/right swap, a limb re-found elsewhere) is not a stroke.
const MAX_STEP_SHARE: f64 = 0.65;
/// Consecutive implausible points after which the wrist is believed to really be there.
const MAX_REJECTED_JUMPS: u32 = 3;
/// Open-hand sightings are kept this long for confirmation.
const SIGHTING_MEMORY_S: f64 = 2.0;
/// A confirming hand may be seen this long before the stroke's end (the hand decelerates,
/// blur fades).
const CONFIRM_BEFORE_S: f64 = 0.2;

#[derive(Debug, Clone, Default)]
struct Arm {
    /// The current stroke's points; the first is where it started.
    points: Vec<WristSample>,
    /// 0 until the wrist has moved enough to tell.
    dir: i8,
    /// Index of the farthest point along `dir`.
    extreme: usize,
    last: Option<WristSample>,
    rejected_jumps: u32,
}

/// A stroke that ended, with its points up to its farthest point.
#[derive(Debug, Clone)]
struct Stroke {
    dir: i8,
    points: Vec<WristSample>,
}

impl Arm {
    /// Adds a reliable wrist point; returns a stroke that this point ended.
    fn push(&mut self, s: WristSample, width: f64, max_speed: f64) -> Option<Stroke> {
        let mut ended = None;
        if let Some(last) = self.last {
            let dt = s.t - last.t;
            if dt > MAX_GAP_S || dt <= 0.0 {
                ended = self.close();
                self.restart(s);
                return ended;
            }
            let speed = (s.x - last.x).hypot(s.y - last.y) / width / dt;
            if speed > max_speed && self.rejected_jumps < MAX_REJECTED_JUMPS {
                self.rejected_jumps += 1;
                return None;
            }
            if self.rejected_jumps >= MAX_REJECTED_JUMPS && speed > max_speed {
                // The wrist stayed where it jumped to: start over from there.
                self.rejected_jumps = 0;
                ended = self.close();
                self.restart(s);
                return ended;
            }
        }
        self.rejected_jumps = 0;
        self.last = Some(s);
        if self.points.is_empty() {
            self.restart(s);
            return None;
        }
        if self.dir == 0 {
            let first = self.points[0];
            if (s.x - first.x).abs() >= START_EPS * width {
                self.dir = if s.x > first.x { 1 } else { -1 };
                self.points.push(s);
                self.extreme = self.points.len() - 1;
            } else if s.t - first.t > STALL_S {
                // Resting or drifting slowly: the stroke starts when the motion does.
                self.restart(s);
            } else {
                self.points.push(s);
            }
            return None;
        }
        let d = f64::from(self.dir);
        let ext = self.points[self.extreme];
        if (s.x - ext.x) * d > 0.0 {
            self.points.push(s);
            self.extreme = self.points.len() - 1;
        } else if (ext.x - s.x) * d > REVERSAL_EPS * width {
            // Turned back: the stroke ended at its extreme; the new one starts there.
            let tail: Vec<WristSample> = self.points[self.extreme..].to_vec();
            ended = self.close();
            self.points = tail;
            self.points.push(s);
            self.dir = -self.dir;
            self.extreme = self.points.len() - 1;
        } else {
            self.points.push(s);
            if s.t - ext.t > STALL_S {
                let tail: Vec<WristSample> = self.points[self.extreme..].to_vec();
                ended = self.close();
                self.points = tail;
                self.dir = 0;
                self.extreme = 0;
            }
        }
        if self.points.len() > MAX_STROKE_POINTS {
            let drop = self.points.len() - MAX_STROKE_POINTS;
            self.points.drain(..drop);
            self.extreme = self.extreme.saturating_sub(drop);
        }
        ended
    }

    /// No reliable wrist this frame.
    fn idle(&mut self, t: f64) -> Option<Stroke> {
        match self.last {
            Some(last) if t - last.t > MAX_GAP_S => {
                let ended = self.close();
                *self = Arm::default();
                ended
            }
            _ => None,
        }
    }

    fn restart(&mut self, s: WristSample) {
        self.points.clear();
        self.points.push(s);
        self.dir = 0;
        self.extreme = 0;
        self.last = Some(s);
        self.rejected_jumps = 0;
    }

    fn close(&mut self) -> Option<Stroke> {
        if self.dir == 0 || self.points.len() < 2 {
            return None;
        }
        let points = self.points[..=self.extreme.min(self.points.len() - 1)].to_vec();
        Some(Stroke {
            dir: self.dir,
            points,
        })
    }
}

/// A stroke that passed the geometric rules and waits for the hand model's confirmation.
#[derive(Debug, Clone, Copy)]
struct Pending {
    swipe: Swipe,
    dir: i8,
    start_x: f64,
    end_x: f64,
    y_range: [f64; 2],
    scale: f64,
    geometry_confidence: f64,
}

/// Swipe detection for both arms of one shopper.
#[derive(Debug, Clone, Default)]
pub struct SwipeDetector {
    arms: [Arm; 2],
    sightings: VecDeque<HandSighting>,
    pending: Vec<Pending>,
    /// The last swipe that fired: (direction, motion start, end).
    last: Option<(i8, f64, f64)>,
    /// Every stroke judged so far, newest last, when `trace` is on (offline tuning).
    pub trace: Option<Vec<StrokeVerdict>>,
}

impl SwipeDetector {
    pub fn reset(&mut self) {
        let trace = self.trace.take().map(|mut v| {
            v.clear();
            v
        });
        *self = Self::default();
        self.trace = trace;
    }

    /// One frame: the reliable wrist of each arm (or `None`), the open-hand sightings of this
    /// frame. Returns the swipes decided in this frame.
    pub fn update(
        &mut self,
        t: f64,
        frame_width: f64,
        wrists: [Option<WristSample>; 2],
        sightings: &[HandSighting],
        config: &GestureConfig,
    ) -> Vec<Swipe> {
        self.sightings.extend(sightings.iter().copied());
        while self
            .sightings
            .front()
            .is_some_and(|s| t - s.t > SIGHTING_MEMORY_S)
        {
            self.sightings.pop_front();
        }
        let mut out = Vec::new();
        for arm in 0..2 {
            let ended = match wrists[arm] {
                Some(s) => self.arms[arm].push(s, frame_width, config.max_wrist_speed),
                None => self.arms[arm].idle(t),
            };
            if let Some(stroke) = ended {
                self.judge(arm, &stroke, frame_width, config);
            }
        }
        self.confirm(t, config, &mut out);
        out
    }

    fn record(&mut self, v: StrokeVerdict) {
        if let Some(trace) = &mut self.trace {
            trace.push(v);
        }
    }

    fn judge(&mut self, arm: usize, stroke: &Stroke, width: f64, config: &GestureConfig) {
        let p = &stroke.points;
        let d = f64::from(stroke.dir);
        // The longest travel within the allowed duration: a slow start or a slow finish
        // must not hide a fast stroke in the middle.
        let mut best = (0usize, 0usize, 0.0f64);
        for j in 0..p.len() {
            for i in (0..j).rev() {
                if p[j].t - p[i].t > config.swipe_max_duration_s {
                    break;
                }
                let travel = (p[j].x - p[i].x) * d;
                if travel > best.2 {
                    best = (i, j, travel);
                }
            }
        }
        let (i, j, travel_px) = best;
        let seg = &p[i..=j.max(i)];
        let travel = travel_px / width;
        let mut verdict = StrokeVerdict {
            arm,
            dir: stroke.dir,
            start: p[0].t,
            end: p[p.len() - 1].t,
            travel,
            below_shoulder: None,
            result: Ok(()),
        };
        let mut below: Vec<f64> = seg
            .iter()
            .filter_map(|s| {
                s.body
                    .map(|b| (s.y - b.shoulder_y) / b.shoulder_width.max(f64::EPSILON))
            })
            .collect();
        below.sort_by(f64::total_cmp);
        let median_below = (!below.is_empty()).then(|| below[below.len() / 2]);
        verdict.below_shoulder = median_below;

        let result = self.rules(
            seg,
            travel_px,
            travel,
            &below,
            median_below,
            stroke.dir,
            p[0].t,
            config,
        );
        verdict.result = result.map(|_| ());
        self.record(verdict);
        let Ok(geometry_confidence) = result else {
            return;
        };
        let (ymin, ymax) = seg
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| {
                (a.min(s.y), b.max(s.y))
            });
        let scale = seg
            .iter()
            .filter_map(|s| s.body.map(|b| b.shoulder_width))
            .fold(0.0, f64::max);
        let swipe = Swipe {
            arm,
            motion: if stroke.dir > 0 {
                SwipeMotion::ImageLeftToRight
            } else {
                SwipeMotion::ImageRightToLeft
            },
            start: p[0].t,
            end: seg[seg.len() - 1].t,
            travel,
            confidence: geometry_confidence,
        };
        self.pending.push(Pending {
            swipe,
            dir: stroke.dir,
            start_x: seg[0].x,
            end_x: seg[seg.len() - 1].x,
            y_range: [ymin, ymax],
            scale,
            geometry_confidence,
        });
    }

    /// The geometric rules; the confidence of a stroke that passes them.
    #[allow(clippy::too_many_arguments)]
    fn rules(
        &self,
        seg: &[WristSample],
        travel_px: f64,
        travel: f64,
        below: &[f64],
        median_below: Option<f64>,
        dir: i8,
        motion_start: f64,
        config: &GestureConfig,
    ) -> Result<f64, Rejection> {
        if travel < config.swipe_min_travel {
            return Err(Rejection::Short);
        }
        if seg.len() < 3 {
            return Err(Rejection::TooFewPoints);
        }
        let max_step = seg
            .windows(2)
            .map(|w| (w[1].x - w[0].x).abs())
            .fold(0.0, f64::max);
        if max_step > MAX_STEP_SHARE * travel_px {
            return Err(Rejection::Jump);
        }
        let (ymin, ymax) = seg
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| {
                (a.min(s.y), b.max(s.y))
            });
        if ymax - ymin > config.swipe_max_vertical_ratio * travel_px {
            return Err(Rejection::Vertical);
        }
        // Without the shoulders there is no telling a raised-hand swipe from a return stroke.
        let Some(median_below) = median_below.filter(|_| 2 * below.len() >= seg.len()) else {
            return Err(Rejection::NoBody);
        };
        if median_below > config.swipe_max_below_shoulder {
            return Err(Rejection::Low);
        }
        let first_body = seg.iter().find_map(|s| s.body);
        let last_body = seg.iter().rev().find_map(|s| s.body);
        if let (Some(a), Some(b)) = (first_body, last_body)
            && (b.center_x - a.center_x).abs() > config.swipe_max_body_ratio * travel_px
        {
            return Err(Rejection::BodyMoved);
        }
        if let Some((last_dir, _, last_end)) = self.last {
            let end = seg[seg.len() - 1].t;
            if last_dir != dir && motion_start < last_end + config.swipe_refractory_s {
                return Err(Rejection::ReturnStroke);
            }
            if end - last_end < config.swipe_cooldown_s {
                return Err(Rejection::TooSoon);
            }
        }
        let travel_margin = ramp(
            travel,
            0.7 * config.swipe_min_travel,
            1.5 * config.swipe_min_travel,
        );
        let height_margin = ramp(
            median_below,
            config.swipe_max_below_shoulder + 0.5,
            config.swipe_max_below_shoulder - 0.5,
        );
        Ok(0.5 * (travel_margin + height_margin))
    }

    fn confirm(&mut self, t: f64, config: &GestureConfig, out: &mut Vec<Swipe>) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let flat = if config.swipe_require_open_hand {
                self.confirmation(&p, config)
            } else {
                Some(1.0)
            };
            match flat {
                Some(flat) => {
                    // A later swipe may have fired meanwhile (the other arm): re-check the
                    // return-stroke rule against it.
                    if let Some((last_dir, _, last_end)) = self.last
                        && ((last_dir != p.dir
                            && p.swipe.start < last_end + config.swipe_refractory_s)
                            || (p.swipe.end - last_end).abs() < config.swipe_cooldown_s)
                    {
                        self.reject_pending(&p, Rejection::ReturnStroke);
                        continue;
                    }
                    let mut swipe = p.swipe;
                    swipe.confidence = 0.5 * (p.geometry_confidence + flat);
                    self.last = Some((p.dir, p.swipe.start, p.swipe.end));
                    out.push(swipe);
                }
                None if t - p.swipe.end <= config.swipe_confirm_wait_s => self.pending.push(p),
                None => self.reject_pending(&p, Rejection::NotConfirmed),
            }
        }
    }

    fn reject_pending(&mut self, p: &Pending, why: Rejection) {
        if let Some(trace) = &mut self.trace
            && let Some(v) = trace
                .iter_mut()
                .rev()
                .find(|v| v.arm == p.swipe.arm && v.end >= p.swipe.end - 1e-9 && v.result.is_ok())
        {
            v.result = Err(why);
        }
    }

    /// The best open-hand sighting at the stroke's end: near the end of the path (not where
    /// it started, which is where the previous stroke ended), level with it, around the time
    /// the stroke ended.
    fn confirmation(&self, p: &Pending, config: &GestureConfig) -> Option<f64> {
        let travel = (p.end_x - p.start_x).abs();
        let d = f64::from(p.dir);
        let margin = 0.5 * p.scale.max(travel * 0.5);
        self.sightings
            .iter()
            .filter(|s| {
                s.t >= p.swipe.end - CONFIRM_BEFORE_S
                    && s.t <= p.swipe.end + config.swipe_confirm_wait_s
                    && (s.wrist[0] - p.start_x) * d >= 0.6 * travel
                    && s.wrist[1] >= p.y_range[0] - margin
                    && s.wrist[1] <= p.y_range[1] + margin
                    && s.flat >= config.min_confidence
            })
            .map(|s| s.flat)
            .fold(None, |acc: Option<f64>, f| {
                Some(acc.map_or(f, |a| a.max(f)))
            })
    }
}
