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
//! - ends with an open, flat hand seen by the hand model near the wrist
//!   (`swipe_require_open_hand`, on by default).
//!
//! The return stroke of a swipe is the classic false trigger. It starts right after the swipe
//! (refractory period), ends without an open palm (confirmation) and is often lower, across
//! the chest (height rule); it is also short and fast (few points, large steps). On the sense
//! clip every return stroke breaks at least two of these rules, so no single threshold is
//! critical.

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
    /// Every rule it broke; empty = a swipe.
    pub rejections: Vec<Rejection>,
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
/// Two wrists closer than this (shoulder widths, or frame widths without shoulders) are one.
const DUPLICATE_SHOULDER_WIDTHS: f64 = 0.3;
const DUPLICATE_FRAME_FRACTION: f64 = 0.05;
/// Open-hand sightings are kept this long for confirmation.
const SIGHTING_MEMORY_S: f64 = 2.0;
/// A confirming open hand may be seen from this long before the stroke starts (the hand is
/// raised and opened, then swipes; mid-stroke it is a blur).
const CONFIRM_LEAD_S: f64 = 0.5;
/// A stroke at least this share of `swipe_min_travel` long has a return stroke, whether it
/// fired or not: the return of a missed swipe must not fire the opposite one.
const RETURN_AFTER_SHARE: f64 = 0.7;

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
    /// The last swipe-sized stroke of this arm, fired or not: (direction, end time).
    last_big: Option<(i8, f64)>,
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
                // Losing the wrist does not end the memory of its last stroke.
                *self = Arm {
                    last_big: self.last_big,
                    ..Arm::default()
                };
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

fn y_range(seg: &[WristSample]) -> (f64, f64) {
    seg.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| {
            (a.min(s.y), b.max(s.y))
        })
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
        let mut wrists = wrists;
        self.drop_duplicate_wrist(&mut wrists, frame_width);
        let mut out = Vec::new();
        for (arm, wrist) in wrists.into_iter().enumerate() {
            let ended = match wrist {
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

    /// The pose model sometimes puts both wrists on the one raised hand (the other arm being
    /// out of the picture): the wrist that jumped there is the copy.
    fn drop_duplicate_wrist(&self, wrists: &mut [Option<WristSample>; 2], width: f64) {
        let [Some(a), Some(b)] = *wrists else {
            return;
        };
        let near = a
            .body
            .or(b.body)
            .map_or(DUPLICATE_FRAME_FRACTION * width, |body| {
                DUPLICATE_SHOULDER_WIDTHS * body.shoulder_width
            });
        if (a.x - b.x).hypot(a.y - b.y) > near {
            return;
        }
        let jump = |arm: usize, s: &WristSample| {
            self.arms[arm]
                .last
                .map_or(f64::INFINITY, |l| (s.x - l.x).hypot(s.y - l.y))
        };
        let drop = if jump(0, &a) > jump(1, &b) { 0 } else { 1 };
        wrists[drop] = None;
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
        let (rejections, geometry_confidence, median_below) =
            self.rules(arm, seg, travel_px, width, stroke.dir, p[0].t, config);
        // A return stroke has no return stroke of its own: the next stroke the other way is the
        // next swipe.
        if travel_px / width >= RETURN_AFTER_SHARE * config.swipe_min_travel
            && !rejections.contains(&Rejection::ReturnStroke)
        {
            self.arms[arm].last_big = Some((stroke.dir, seg[seg.len() - 1].t));
        }
        self.record(StrokeVerdict {
            arm,
            dir: stroke.dir,
            start: p[0].t,
            end: p[p.len() - 1].t,
            travel: travel_px / width,
            below_shoulder: median_below,
            rejections: rejections.clone(),
        });
        if !rejections.is_empty() {
            return;
        }
        let (ymin, ymax) = y_range(seg);
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
            travel: travel_px / width,
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

    /// Every geometric rule the stroke's fastest segment breaks (all of them, not just the
    /// first, so a trace shows how many independent reasons reject a stroke), the confidence
    /// if it breaks none, and its median height below the shoulders.
    #[allow(clippy::too_many_arguments)]
    fn rules(
        &self,
        arm: usize,
        seg: &[WristSample],
        travel_px: f64,
        width: f64,
        dir: i8,
        motion_start: f64,
        config: &GestureConfig,
    ) -> (Vec<Rejection>, f64, Option<f64>) {
        let mut no = Vec::new();
        let travel = travel_px / width;
        if travel < config.swipe_min_travel {
            no.push(Rejection::Short);
        }
        if seg.len() < 3 {
            no.push(Rejection::TooFewPoints);
        }
        let max_step = seg
            .windows(2)
            .map(|w| (w[1].x - w[0].x).abs())
            .fold(0.0, f64::max);
        if max_step > MAX_STEP_SHARE * travel_px {
            no.push(Rejection::Jump);
        }
        let (ymin, ymax) = y_range(seg);
        if ymax - ymin > config.swipe_max_vertical_ratio * travel_px {
            no.push(Rejection::Vertical);
        }
        let mut below: Vec<f64> = seg
            .iter()
            .filter_map(|s| {
                s.body
                    .map(|b| (s.y - b.shoulder_y) / b.shoulder_width.max(f64::EPSILON))
            })
            .collect();
        below.sort_by(f64::total_cmp);
        let median_below = (!below.is_empty()).then(|| below[below.len() / 2]);
        // Without the shoulders there is no telling a raised-hand swipe from a return stroke.
        match median_below.filter(|_| 2 * below.len() >= seg.len()) {
            None => no.push(Rejection::NoBody),
            Some(m) if m > config.swipe_max_below_shoulder => no.push(Rejection::Low),
            Some(_) => {}
        }
        let first_body = seg.iter().find_map(|s| s.body);
        let last_body = seg.iter().rev().find_map(|s| s.body);
        if let (Some(a), Some(b)) = (first_body, last_body)
            && (b.center_x - a.center_x).abs() > config.swipe_max_body_ratio * travel_px
        {
            no.push(Rejection::BodyMoved);
        }
        // The return stroke of the last swipe (any arm), or of this arm's last swipe-sized
        // stroke even if that did not fire.
        let returning = |last: Option<(i8, f64)>| {
            last.is_some_and(|(last_dir, last_end)| {
                last_dir != dir && motion_start < last_end + config.swipe_refractory_s
            })
        };
        if returning(self.last.map(|(d, _, end)| (d, end))) || returning(self.arms[arm].last_big) {
            no.push(Rejection::ReturnStroke);
        }
        if let Some((_, _, last_end)) = self.last {
            let end = seg.last().map_or(motion_start, |s| s.t);
            if end - last_end < config.swipe_cooldown_s {
                no.push(Rejection::TooSoon);
            }
        }
        let travel_margin = ramp(
            travel,
            0.7 * config.swipe_min_travel,
            1.5 * config.swipe_min_travel,
        );
        let height_margin = ramp(
            median_below.unwrap_or(f64::INFINITY),
            config.swipe_max_below_shoulder + 0.5,
            config.swipe_max_below_shoulder - 0.5,
        );
        (no, 0.5 * (travel_margin + height_margin), median_below)
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
            && let Some(v) = trace.iter_mut().rev().find(|v| {
                v.arm == p.swipe.arm && v.end >= p.swipe.end - 1e-9 && v.rejections.is_empty()
            })
        {
            v.rejections.push(why);
        }
    }

    /// The best open-hand sighting along the stroke: on its path (level with it, within its
    /// horizontal span), from just before it started (the hand raised and opened) until just
    /// after it ended. Mid-stroke the hand is usually a blur, and how often the hand model
    /// looks is the vision stage's business, so any point of the stroke will do; the return
    /// stroke, which this would let through, has its own rule.
    fn confirmation(&self, p: &Pending, config: &GestureConfig) -> Option<f64> {
        let travel = (p.end_x - p.start_x).abs();
        let margin = 0.5 * p.scale.max(travel * 0.5);
        let (xmin, xmax) = (p.start_x.min(p.end_x), p.start_x.max(p.end_x));
        self.sightings
            .iter()
            .filter(|s| {
                s.t >= p.swipe.start - CONFIRM_LEAD_S
                    && s.t <= p.swipe.end + config.swipe_confirm_wait_s
                    && s.wrist[0] >= xmin - margin
                    && s.wrist[0] <= xmax + margin
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
