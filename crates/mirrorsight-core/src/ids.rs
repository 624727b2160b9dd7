//! Unguessable ids (sessions, scenes, photos): 128 random bits, base64url, 22 characters.
//!
//! 22 characters from `[A-Za-z0-9_-]` fit a WeChat `scene_str` (≤ 64) and a mini-program
//! `scene` (≤ 32, that alphabet allowed). On a live mirror the bits come from the OS; in
//! replay from a seeded ChaCha stream, so two replays print the same ids.

use base64::Engine;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Replay seed used when `--seed` is not given.
pub const DEFAULT_REPLAY_SEED: u64 = 0x6d69_7272_6f72;

#[derive(Debug, Clone)]
pub struct IdGenerator {
    rng: ChaCha20Rng,
}

impl IdGenerator {
    pub fn from_os() -> Self {
        Self {
            rng: ChaCha20Rng::from_os_rng(),
        }
    }

    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// A derived, independent generator (e.g. one per consumer thread), still deterministic.
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Self {
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    pub fn next_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_chars_and_seeded_ids_repeat() {
        let mut a = IdGenerator::seeded(7);
        let mut b = IdGenerator::seeded(7);
        let id = a.next_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(id, b.next_id());
        assert_ne!(a.next_id(), id);
        assert_ne!(
            IdGenerator::from_os().next_id(),
            IdGenerator::from_os().next_id()
        );
    }
}
