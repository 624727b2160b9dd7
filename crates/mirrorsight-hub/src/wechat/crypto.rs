//! Safe mode (`encrypt_type=aes`): AES-256-CBC with key = base64(EncodingAESKey + "="),
//! IV = the key's first 16 bytes, PKCS#7 padding to 32-byte blocks, and
//! plaintext = 16 random bytes ‖ u32 BE length ‖ XML ‖ appid.

use aes::Aes256;
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use subtle::ConstantTimeEq;
use thiserror::Error;

type Encryptor = cbc::Encryptor<Aes256>;
type Decryptor = cbc::Decryptor<Aes256>;

/// WeChat pads to 32 bytes, not to the AES block size.
const PAD_BLOCK: usize = 32;
/// Longest message we agree to decrypt; the callback body is limited well below this anyway.
const MAX_XML_LEN: usize = 1 << 20;

/// EncodingAESKeys are 43 random base64 characters, so their last character usually carries
/// non-zero trailing bits, which a strict decoder refuses.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptError {
    #[error("EncodingAESKey must be 43 base64 characters decoding to 32 bytes")]
    BadKey,
    #[error("Encrypt is not base64")]
    NotBase64,
    #[error("ciphertext length {0} is not a positive multiple of 16")]
    BadLength(usize),
    #[error("bad padding")]
    BadPadding,
    #[error("declared message length does not fit the plaintext")]
    BadFrame,
    #[error("message is for another appid")]
    WrongAppid,
    #[error("message is not UTF-8")]
    NotUtf8,
    #[error("no randomness available: {0}")]
    Random(String),
}

/// Encrypts and decrypts safe-mode messages for one official account.
#[derive(Clone)]
pub struct MessageCrypt {
    key: [u8; 32],
    appid: String,
}

impl std::fmt::Debug for MessageCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCrypt")
            .field("key", &"[redacted]")
            .field("appid", &self.appid)
            .finish()
    }
}

impl MessageCrypt {
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<Self, CryptError> {
        let trimmed = encoding_aes_key.trim();
        if trimmed.len() != 43 {
            return Err(CryptError::BadKey);
        }
        let bytes = LENIENT
            .decode(format!("{trimmed}="))
            .map_err(|_| CryptError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptError::BadKey)?;
        Ok(Self {
            key,
            appid: appid.to_string(),
        })
    }

    /// Encrypts `xml` with fresh random bytes; the base64 `Encrypt` value.
    pub fn encrypt(&self, xml: &str) -> Result<String, CryptError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| CryptError::Random(e.to_string()))?;
        Ok(self.encrypt_with_random(random, xml))
    }

    /// Deterministic form of [`Self::encrypt`], for tests against known vectors.
    pub fn encrypt_with_random(&self, random: [u8; 16], xml: &str) -> String {
        let xml = xml.as_bytes();
        let mut plain = Vec::with_capacity(16 + 4 + xml.len() + self.appid.len() + PAD_BLOCK);
        plain.extend_from_slice(&random);
        // A reply is a few KiB; anything near 4 GiB never reaches here.
        plain.extend_from_slice(&(xml.len() as u32).to_be_bytes());
        plain.extend_from_slice(xml);
        plain.extend_from_slice(self.appid.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let iv: [u8; 16] = self.iv();
        let cipher = Encryptor::new(&self.key.into(), &iv.into());
        // The buffer is already a whole number of blocks, so NoPadding cannot fail.
        let out = match cipher.encrypt_padded_mut::<NoPadding>(&mut plain, len) {
            Ok(out) => out.to_vec(),
            Err(_) => Vec::new(),
        };
        STANDARD.encode(out)
    }

    /// Decrypts an `Encrypt` value and checks that it is addressed to our appid.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, CryptError> {
        let mut data = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| CryptError::NotBase64)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptError::BadLength(data.len()));
        }
        let iv: [u8; 16] = self.iv();
        let plain = Decryptor::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptError::BadPadding)?;
        let pad = usize::from(*plain.last().ok_or(CryptError::BadPadding)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(CryptError::BadPadding);
        }
        let plain = &plain[..plain.len() - pad];
        if plain.len() < 20 {
            return Err(CryptError::BadFrame);
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&plain[16..20]);
        let xml_len = u32::from_be_bytes(len_bytes) as usize;
        let rest = &plain[20..];
        if xml_len > MAX_XML_LEN || xml_len > rest.len() {
            return Err(CryptError::BadFrame);
        }
        let (xml, appid) = rest.split_at(xml_len);
        if !bool::from(appid.ct_eq(self.appid.as_bytes())) {
            return Err(CryptError::WrongAppid);
        }
        String::from_utf8(xml.to_vec()).map_err(|_| CryptError::NotUtf8)
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx5823bf96d3bd56c7";

    #[test]
    fn round_trip() {
        let c = MessageCrypt::new(KEY, APPID).unwrap();
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Content>你好 ✓</Content></xml>";
        let enc = c.encrypt(xml).unwrap();
        assert_eq!(c.decrypt(&enc).unwrap(), xml);
        // Fresh randomness each time, same plaintext back.
        let enc2 = c.encrypt(xml).unwrap();
        assert_ne!(enc, enc2);
        assert_eq!(c.decrypt(&enc2).unwrap(), xml);
        // Every length up to two pad blocks, including the exact multiples.
        for n in 0..70 {
            let s = "x".repeat(n);
            assert_eq!(c.decrypt(&c.encrypt(&s).unwrap()).unwrap(), s);
        }
    }

    #[test]
    fn layout_matches_the_spec() {
        let c = MessageCrypt::new(KEY, APPID).unwrap();
        let enc = c.encrypt_with_random([7; 16], "<xml/>");
        let mut data = STANDARD.decode(&enc).unwrap();
        // 16 + 4 + 6 + 18 = 44 bytes, padded to 64 with twenty 0x14 bytes.
        assert_eq!(data.len(), 64);
        let plain = Decryptor::new(&c.key.into(), &c.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .unwrap();
        assert_eq!(&plain[..16], &[7; 16]);
        assert_eq!(&plain[16..20], &6u32.to_be_bytes());
        assert_eq!(&plain[20..26], b"<xml/>");
        assert_eq!(&plain[26..44], APPID.as_bytes());
        assert!(plain[44..].iter().all(|&b| b == 20));
    }

    #[test]
    fn refuses_tampering_and_other_appids() {
        let c = MessageCrypt::new(KEY, APPID).unwrap();
        let other = MessageCrypt::new(KEY, "wxanotherappid0000").unwrap();
        let enc = other.encrypt("<xml/>").unwrap();
        assert_eq!(c.decrypt(&enc), Err(CryptError::WrongAppid));
        assert_eq!(c.decrypt("not base64!"), Err(CryptError::NotBase64));
        assert_eq!(c.decrypt(""), Err(CryptError::BadLength(0)));
        assert_eq!(c.decrypt("AAAA"), Err(CryptError::BadLength(3)));
        let wrong_key =
            MessageCrypt::new("ZZZdefghijklmnopqrstuvwxyz0123456789ABCDEFG", APPID).unwrap();
        assert!(wrong_key.decrypt(&c.encrypt("<xml/>").unwrap()).is_err());
    }

    #[test]
    fn key_must_be_43_characters_of_base64() {
        assert_eq!(
            MessageCrypt::new("short", APPID).err(),
            Some(CryptError::BadKey)
        );
        assert_eq!(
            MessageCrypt::new(&"!".repeat(43), APPID).err(),
            Some(CryptError::BadKey)
        );
        // Non-zero trailing bits in the 43rd character are normal for real keys.
        assert!(MessageCrypt::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFH", APPID).is_ok());
    }
}
