//! `[gestures]`: every threshold of the recognizer and the gesture → action mapping.
//!
//! Distances are relative to the body, never pixels or fractions of the picture, so one
//! configuration works for any camera resolution, shopper distance and place in the frame:
//! swipe travel, wrist speed and heights are in shoulder widths, hand motion is in palm
//! lengths; durations are media seconds, never frame counts.

use mirrorsight_contract::events::Side;
use serde::{Deserialize, Serialize};

use crate::Section;

/// A configuration value out of range; `key` is the full dotted key.
pub type GestureConfigError = crate::ConfigError;

/// What a recognised gesture asks the mirror to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `outfit_switch` with `next` / `previous` from the swipe's direction (swipes only).
    OutfitSwitch,
    /// `photo_requested`, with the gesture's key (`thumbs_up`, `open_palm_hold`, ...) as trigger.
    PhotoRequested,
    /// `photo_discard_requested`.
    PhotoDiscardRequested,
    /// `clip_requested` (a turn-around clip), with the gesture's key as trigger.
    ClipRequested,
    /// Only the `gesture` event is emitted.
    None,
}

/// `[gestures.actions]`: which action each gesture triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionMap {
    /// Default `outfit_switch`.
    pub swipe: Action,
    /// Default `photo_requested` (trigger `thumbs_up`).
    pub thumbs_up: Action,
    /// Default `photo_discard_requested`.
    pub thumbs_down: Action,
    /// An open palm held for `gestures.palm_hold_s`. Default `clip_requested` (trigger `open_palm_hold`).
    pub open_palm_hold: Action,
    /// Default `none`.
    pub fist: Action,
    /// Default `none`.
    pub pointing: Action,
    /// Default `none`.
    pub victory: Action,
}

impl Default for ActionMap {
    fn default() -> Self {
        Self {
            swipe: Action::OutfitSwitch,
            thumbs_up: Action::PhotoRequested,
            thumbs_down: Action::PhotoDiscardRequested,
            open_palm_hold: Action::ClipRequested,
            fist: Action::None,
            pointing: Action::None,
            victory: Action::None,
        }
    }
}

/// `[gestures]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GestureConfig {
    /// Recognise gestures at all. Default `true`.
    pub enabled: bool,
    /// Hands whose landmark-model presence is below this are ignored (false palms on
    /// background objects score ≤ 0.5). Default 0.6.
    pub min_hand_presence: f32,
    /// Minimum shape confidence (0..1) for a frame to count towards a static gesture, and
    /// minimum mean confidence for it to fire. Default 0.6.
    pub min_confidence: f64,
    /// How long a static shape (thumbs up/down, fist, pointing, victory) must be held.
    /// Short, because the hand tracker may pick a hand up late, but longer than a hand passes
    /// through a shape while doing something else: on the labelled footage, under every
    /// transform of the robustness suite, a shown thumb is read for 0.25 s or more, while
    /// clasped hands in a squat read as a thumb for up to 0.17 s. Default 0.2 s.
    pub shape_hold_s: f64,
    /// A static shape needs at least this many agreeing frames as well. Default 3.
    pub shape_min_frames: u32,
    /// Fraction of the frames since a shape was first seen that must agree with it. Default 0.75.
    pub shape_min_agreement: f64,
    /// A hand unseen (or seen with another shape) this long interrupts a hold. Default 0.25 s.
    pub shape_max_gap_s: f64,
    /// How far the wrist may wander during a hold, in palm lengths (wrist to middle knuckle):
    /// a moving hand is swiping or waving, not showing a shape. Default 1.0.
    pub shape_max_motion: f64,
    /// A static shape counts only while the wrist is no lower than this below the shoulder
    /// line, in shoulder widths (about the bottom of the chest): hands hanging at the sides or
    /// resting in the lap show nothing. Applies when the shoulders are seen. Default 1.0.
    pub shape_max_below_shoulder: f64,
    /// How long an open palm must be held to count as `open_palm` (and trigger a photo). Default 1.0 s.
    pub palm_hold_s: f64,
    /// The open palm must be upright: fingers pointing up within this angle of the image's
    /// vertical (a relaxed hand hangs fingers down). Default 50°.
    pub palm_max_tilt_deg: f64,
    /// How far the wrist may wander during the open-palm hold, in palm lengths. Default 0.6.
    pub palm_max_motion: f64,
    /// The open palm must face the camera: how clearly the knuckles' order shows the palm
    /// rather than the back of the hand or a palm turned up (0..1, see `palm_turn` in the
    /// shape reading). Default 0.2.
    pub palm_min_facing: f64,
    /// The open palm's fingers must be apart, not held together: minimum angle between the
    /// index and little fingers, degrees. Default 15.
    pub palm_min_spread_deg: f64,
    /// A hand shape counts only while the other hand is not next to it (hands clasped, pressed
    /// together or opened like a book are not a gesture): minimum distance between the two
    /// wrists, in shoulder widths. Default 0.8.
    pub hands_min_apart_shoulders: f64,
    /// After a gesture fires, the same gesture cannot fire again for this long. Default 1.5 s.
    pub cooldown_s: f64,
    /// ... nor before its shape has been gone from every hand for this long (a long hold fires once).
    /// Default 0.5 s.
    pub release_s: f64,
    /// A hand farther than this from every reliably seen wrist of the shopper's body, in
    /// shoulder widths, is someone else's (or a false detection). Default 0.6.
    pub hand_max_wrist_distance: f64,
    /// Pose wrists and shoulders below this visibility are ignored. Default 0.8.
    pub min_pose_visibility: f32,
    /// Minimum wrist travel of a swipe along the shoulder line, in shoulder widths. Default 1.0.
    pub swipe_min_travel_shoulders: f64,
    /// The travel must happen within this time. Default 0.8 s.
    pub swipe_max_duration_s: f64,
    /// Vertical extent of the stroke over its horizontal travel: above this it is a wave or an
    /// arc, not a swipe. Default 0.5.
    pub swipe_max_vertical_ratio: f64,
    /// How far below the shoulder line the wrist may be during a swipe (median over the stroke),
    /// in shoulder widths; negative means above. Swipes are made with the hand raised, the
    /// return stroke runs lower, across the chest. Default 0.3.
    pub swipe_max_below_shoulder: f64,
    /// The shoulders may move at most this fraction of the wrist travel (walking past, leaning,
    /// squatting is not a swipe). Default 0.35.
    pub swipe_max_body_ratio: f64,
    /// After a swipe (or any swipe-sized stroke of the same arm, fired or not), a stroke the
    /// other way that starts within this time is its return stroke and never fires. Default 0.6 s.
    pub swipe_refractory_s: f64,
    /// Minimum time between two swipes' ends, either direction. Default 0.3 s.
    pub swipe_cooldown_s: f64,
    /// Require the hand model to see an open (flat) hand on the stroke's path, from just before
    /// it starts until `swipe_confirm_wait_s` after it ends. Default `true`.
    pub swipe_require_open_hand: bool,
    /// How long after the stroke ends to wait for that open hand. Default 0.3 s.
    pub swipe_confirm_wait_s: f64,
    /// Wrist points that would need a faster speed than this (shoulder widths per second) to be
    /// reached are glitches and ignored. Default 25.0.
    pub max_wrist_speed_shoulders: f64,
    /// The shopper's swipe direction (as they see it in the mirror) that means `next`; the
    /// other means `previous`. Default `left`, like flicking a page.
    pub swipe_next_direction: Side,
    pub actions: ActionMap,
}

impl Default for GestureConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_hand_presence: 0.6,
            min_confidence: 0.6,
            shape_hold_s: 0.2,
            shape_min_frames: 3,
            shape_min_agreement: 0.75,
            shape_max_gap_s: 0.25,
            shape_max_motion: 1.0,
            shape_max_below_shoulder: 1.0,
            palm_hold_s: 1.0,
            palm_max_tilt_deg: 50.0,
            palm_max_motion: 0.6,
            palm_min_facing: 0.2,
            palm_min_spread_deg: 15.0,
            hands_min_apart_shoulders: 0.8,
            cooldown_s: 1.5,
            release_s: 0.5,
            hand_max_wrist_distance: 0.6,
            min_pose_visibility: 0.8,
            swipe_min_travel_shoulders: 1.0,
            swipe_max_duration_s: 0.8,
            swipe_max_vertical_ratio: 0.5,
            swipe_max_below_shoulder: 0.3,
            swipe_max_body_ratio: 0.35,
            swipe_refractory_s: 0.6,
            swipe_cooldown_s: 0.3,
            swipe_require_open_hand: true,
            swipe_confirm_wait_s: 0.3,
            max_wrist_speed_shoulders: 25.0,
            swipe_next_direction: Side::Left,
            actions: ActionMap::default(),
        }
    }
}

impl GestureConfig {
    /// Checks every value; the error names the full key.
    pub fn validate(&self) -> Result<(), GestureConfigError> {
        let section = Section("gestures");
        section.fraction("min_hand_presence", f64::from(self.min_hand_presence))?;
        section.fraction("min_confidence", self.min_confidence)?;
        section.positive("shape_hold_s", self.shape_hold_s)?;
        if self.shape_min_frames == 0 {
            return Err(section.error("shape_min_frames", "must be at least 1"));
        }
        section.fraction("shape_min_agreement", self.shape_min_agreement)?;
        section.positive("shape_max_gap_s", self.shape_max_gap_s)?;
        section.positive("shape_max_motion", self.shape_max_motion)?;
        section.finite("shape_max_below_shoulder", self.shape_max_below_shoulder)?;
        section.positive("palm_hold_s", self.palm_hold_s)?;
        if !(self.palm_max_tilt_deg > 0.0 && self.palm_max_tilt_deg <= 180.0) {
            return Err(section.error(
                "palm_max_tilt_deg",
                format!("must be in (0, 180], got {}", self.palm_max_tilt_deg),
            ));
        }
        section.positive("palm_max_motion", self.palm_max_motion)?;
        section.fraction("palm_min_facing", self.palm_min_facing)?;
        if !(0.0..=90.0).contains(&self.palm_min_spread_deg) {
            return Err(section.error(
                "palm_min_spread_deg",
                format!("must be in [0, 90], got {}", self.palm_min_spread_deg),
            ));
        }
        section.non_negative("hands_min_apart_shoulders", self.hands_min_apart_shoulders)?;
        section.non_negative("cooldown_s", self.cooldown_s)?;
        section.non_negative("release_s", self.release_s)?;
        section.positive("hand_max_wrist_distance", self.hand_max_wrist_distance)?;
        section.fraction("min_pose_visibility", f64::from(self.min_pose_visibility))?;
        if !(self.swipe_min_travel_shoulders > 0.0 && self.swipe_min_travel_shoulders <= 10.0) {
            return Err(section.error(
                "swipe_min_travel_shoulders",
                format!(
                    "must be in shoulder widths in (0, 10], got {}",
                    self.swipe_min_travel_shoulders
                ),
            ));
        }
        section.positive("swipe_max_duration_s", self.swipe_max_duration_s)?;
        section.positive("swipe_max_vertical_ratio", self.swipe_max_vertical_ratio)?;
        section.finite("swipe_max_below_shoulder", self.swipe_max_below_shoulder)?;
        section.positive("swipe_max_body_ratio", self.swipe_max_body_ratio)?;
        section.non_negative("swipe_refractory_s", self.swipe_refractory_s)?;
        section.non_negative("swipe_cooldown_s", self.swipe_cooldown_s)?;
        section.non_negative("swipe_confirm_wait_s", self.swipe_confirm_wait_s)?;
        section.positive("max_wrist_speed_shoulders", self.max_wrist_speed_shoulders)?;
        let a = &self.actions;
        for (key, action) in [
            ("thumbs_up", a.thumbs_up),
            ("thumbs_down", a.thumbs_down),
            ("open_palm_hold", a.open_palm_hold),
            ("fist", a.fist),
            ("pointing", a.pointing),
            ("victory", a.victory),
        ] {
            if action == Action::OutfitSwitch {
                return Err(section.error(
                    &format!("actions.{key}"),
                    "outfit_switch needs a direction, which only `swipe` has",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(GestureConfig::default().validate(), Ok(()));
    }

    #[test]
    fn toml_overrides_and_partial_tables() {
        let text = r#"
            swipe_min_travel_shoulders = 1.4
            swipe_next_direction = "right"
            [actions]
            thumbs_up = "none"
            fist = "photo_requested"
        "#;
        let c: GestureConfig = toml::from_str(text).unwrap();
        assert_eq!(c.swipe_min_travel_shoulders, 1.4);
        assert_eq!(c.swipe_next_direction, Side::Right);
        assert_eq!(c.actions.thumbs_up, Action::None);
        assert_eq!(c.actions.fist, Action::PhotoRequested);
        // Untouched keys keep their defaults.
        assert_eq!(c.actions.swipe, Action::OutfitSwitch);
        assert_eq!(c.palm_hold_s, 1.0);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<GestureConfig>("swipe_min_travl = 0.3").is_err());
        // The old frame-fraction keys are gone: a config naming them is refused by name.
        assert!(toml::from_str::<GestureConfig>("swipe_min_travel = 0.3").is_err());
        assert!(toml::from_str::<GestureConfig>("max_wrist_speed = 8.0").is_err());
        assert!(toml::from_str::<GestureConfig>("[actions]\nwave = \"none\"").is_err());
        assert!(toml::from_str::<GestureConfig>("[actions]\nswipe = \"dance\"").is_err());
    }

    #[test]
    fn errors_name_the_full_key() {
        let c = GestureConfig {
            swipe_min_travel_shoulders: -1.5,
            ..GestureConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "gestures.swipe_min_travel_shoulders");
        assert!(
            e.to_string()
                .contains("gestures.swipe_min_travel_shoulders"),
            "{e}"
        );

        let c = GestureConfig {
            palm_hold_s: f64::NAN,
            ..GestureConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "gestures.palm_hold_s");

        let mut c = GestureConfig::default();
        c.actions.thumbs_up = Action::OutfitSwitch;
        assert_eq!(c.validate().unwrap_err().key, "gestures.actions.thumbs_up");
    }
}
