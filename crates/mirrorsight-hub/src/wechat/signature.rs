//! `signature = hex(sha1(join(sorted([token, timestamp, nonce]))))`, and `msg_signature`,
//! which is the same with the `Encrypt` payload added to the list.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The signature WeChat computes over `parts` (sorted bytewise, then concatenated).
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `presented` is the signature over `parts`. Constant-time in the compared digest, so
/// response timing does not reveal how much of a forged signature was right.
pub fn verify_signature(presented: &str, parts: &[&str]) -> bool {
    let expected = signature(parts);
    let presented = presented.trim().to_ascii_lowercase();
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official test value (shared/notes/wechat-api.md).
    #[test]
    fn official_test_vector() {
        let sig = signature(&["AAAAA", "1714037059", "486452656"]);
        assert_eq!(sig, "899cf89e464efb63f54ddac96b0a0a235f53aa78");
        assert!(verify_signature(
            "899cf89e464efb63f54ddac96b0a0a235f53aa78",
            &["486452656", "AAAAA", "1714037059"]
        ));
        assert!(verify_signature(
            "899CF89E464EFB63F54DDAC96B0A0A235F53AA78",
            &["AAAAA", "1714037059", "486452656"]
        ));
    }

    #[test]
    fn wrong_or_malformed_signatures_fail() {
        let parts = ["AAAAA", "1714037059", "486452656"];
        assert!(!verify_signature(
            "899cf89e464efb63f54ddac96b0a0a235f53aa79",
            &parts
        ));
        assert!(!verify_signature("", &parts));
        assert!(!verify_signature("899cf89e", &parts));
        assert!(!verify_signature(
            "899cf89e464efb63f54ddac96b0a0a235f53aa78",
            &["AAAAB", "1714037059", "486452656"]
        ));
    }
}
