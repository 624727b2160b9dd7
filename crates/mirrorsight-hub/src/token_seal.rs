//! The shared WeChat access token, sealed for the database.
//!
//! Every hub instance of a chain takes the access token from the database (see
//! [`crate::lease`]); anyone who can read that row (a backup, a read-only replica, a support
//! login) could otherwise call the official account's API as the store. So the row holds the
//! token encrypted with ChaCha20-Poly1305 (an AEAD: a changed byte fails to open, never a
//! wrong token) under a key all instances share:
//!
//! - `secrets.token_key_file`, else `$CREDENTIALS_DIRECTORY/<secrets.token_key_credential>`
//!   (default `hub-token-key`), else `$MIRRORSIGHT_HUB_TOKEN_KEY`: 32 random bytes as 64 hex
//!   digits or base64 (`openssl rand -hex 32`);
//! - without one, a key derived (HKDF-SHA256) from the appsecret, which every instance holds
//!   anyway: a database dump alone then reveals nothing, and whoever holds the appsecret could
//!   fetch a token themselves.
//!
//! Sealed form: `v1:` and the base64 of a random 96-bit nonce followed by the ciphertext and
//! its tag; the token's name (`wechat:<appid>`) is bound in as associated data, so a row
//! cannot be moved to another account.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use thiserror::Error;

/// What a sealed value starts with.
const VERSION_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
/// HKDF `info` of the key derived from the appsecret.
const DERIVED_KEY_INFO: &[u8] = b"mirrorsight-hub shared access token at rest v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "the token key is not 32 bytes as 64 hex digits or base64 (make one with `openssl rand -hex 32`)"
    )]
    BadKey,
    #[error(
        "the shared access token of {name:?} in the database does not open with this instance's token key; every instance needs the same secrets.token_key (or, without one, the same appsecret)"
    )]
    WrongKey { name: String },
    #[error(
        "the shared access token of {name:?} in the database is not sealed (stored by an older hub)"
    )]
    NotSealed { name: String },
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// Seals and opens the shared access token. Cheap to clone.
#[derive(Clone)]
pub struct TokenSealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for TokenSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSealer(<key>)")
    }
}

impl TokenSealer {
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// The key as a credential holds it: 64 hex digits or base64 of 32 bytes (surrounding
    /// whitespace ignored).
    pub fn from_credential(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 64 {
            hex::decode(text).map_err(|_| SealError::BadKey)?
        } else {
            BASE64
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .map_err(|_| SealError::BadKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::from_key(&key))
    }

    /// The key every instance derives alike from the appsecret, when no token key is set.
    pub fn derived_from_appsecret(appsecret: &str) -> Self {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, appsecret.as_bytes())
            .expand(DERIVED_KEY_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self::from_key(&key)
    }

    /// `token` sealed for the row of `name`.
    pub fn seal(&self, name: &str, token: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            // Only fails for messages beyond 2^38 bytes.
            .map_err(|_| SealError::Random("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{VERSION_PREFIX}{}", BASE64.encode(out)))
    }

    /// The token in the row of `name`.
    pub fn open(&self, name: &str, stored: &str) -> Result<String, SealError> {
        let Some(encoded) = stored.strip_prefix(VERSION_PREFIX) else {
            return Err(SealError::NotSealed { name: name.into() });
        };
        let wrong = || SealError::WrongKey { name: name.into() };
        let bytes = BASE64.decode(encoded).map_err(|_| wrong())?;
        if bytes.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_with_the_same_key_and_name() {
        let sealer = TokenSealer::from_credential(&"ab".repeat(32)).unwrap();
        let token = "ACCESS_TOKEN_0123456789";
        let sealed = sealer.seal("wechat:wx1", token).unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains(token) && !sealed.contains(&BASE64.encode(token)));
        assert_ne!(
            sealed,
            sealer.seal("wechat:wx1", token).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open("wechat:wx1", &sealed).unwrap(), token);
        assert!(matches!(
            sealer.open("wechat:wx2", &sealed),
            Err(SealError::WrongKey { .. })
        ));
        let other = TokenSealer::from_credential(&BASE64.encode([7u8; 32])).unwrap();
        let err = other.open("wechat:wx1", &sealed).unwrap_err();
        assert!(matches!(err, SealError::WrongKey { .. }));
        assert!(!err.to_string().contains('\n'));
        assert!(matches!(
            sealer.open("wechat:wx1", token),
            Err(SealError::NotSealed { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
        assert!(sealer.open("wechat:wx1", &tampered).is_err());
    }

    #[test]
    fn keys_are_32_bytes_and_derived_keys_agree() {
        for bad in ["", "short", &"zz".repeat(32), &BASE64.encode([1u8; 16])] {
            assert_eq!(
                TokenSealer::from_credential(bad).unwrap_err(),
                SealError::BadKey,
                "{bad}"
            );
        }
        let a = TokenSealer::derived_from_appsecret("appsecret-1");
        let b = TokenSealer::derived_from_appsecret("appsecret-1");
        let c = TokenSealer::derived_from_appsecret("appsecret-2");
        let sealed = a.seal("n", "t").unwrap();
        assert_eq!(b.open("n", &sealed).unwrap(), "t");
        assert!(c.open("n", &sealed).is_err());
    }
}
