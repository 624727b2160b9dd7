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
        let (plain, padding) = plain.split_at(plain.len() - pad);
        // PKCS#7: every padding byte holds the count. WeChat's own code pads this way; a
        // frame that does not was not made by it.
        if padding.iter().any(|&b| usize::from(b) != pad) {
            return Err(CryptError::BadPadding);
        }
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

    /// WeChat's published sample (the `WXBizMsgCrypt` demo): EncodingAESKey, Token
    /// `spamtest`, appid `wx2c2769f8efd9abc2`, timestamp `1409735669`, nonce `1320562132`.
    const SAMPLE_APPID: &str = "wx2c2769f8efd9abc2";
    const SAMPLE_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    #[test]
    fn official_sample_decrypts() {
        let c = MessageCrypt::new(KEY, SAMPLE_APPID).unwrap();
        assert_eq!(
            c.decrypt(SAMPLE_ENCRYPT).unwrap(),
            "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
        );
        assert_eq!(
            crate::wechat::signature(&["spamtest", "1409735669", "1320562132", SAMPLE_ENCRYPT]),
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
        );
        // The same frame for another account is refused.
        let ours = MessageCrypt::new(KEY, APPID).unwrap();
        assert_eq!(ours.decrypt(SAMPLE_ENCRYPT), Err(CryptError::WrongAppid));
    }

    /// A frame encrypted as-is: the padding, length and appid exactly as the test writes them.
    fn raw_frame(key: &str, plain: &[u8]) -> String {
        let c = MessageCrypt::new(key, APPID).unwrap();
        let mut buf = plain.to_vec();
        let len = buf.len();
        assert_eq!(len % 16, 0, "whole AES blocks");
        let out = Encryptor::new(&c.key.into(), &c.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap()
            .to_vec();
        STANDARD.encode(out)
    }

    /// 16 random bytes, the length, the message and the appid, unpadded.
    fn frame_body(declared_len: u32, xml: &[u8], appid: &[u8]) -> Vec<u8> {
        let mut plain = vec![9u8; 16];
        plain.extend_from_slice(&declared_len.to_be_bytes());
        plain.extend_from_slice(xml);
        plain.extend_from_slice(appid);
        plain
    }

    fn pkcs7(mut plain: Vec<u8>) -> Vec<u8> {
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        plain
    }

    #[test]
    fn malformed_frames_are_refused() {
        let c = MessageCrypt::new(KEY, APPID).unwrap();
        let xml = b"<xml><A>1</A></xml>";
        let good = pkcs7(frame_body(xml.len() as u32, xml, APPID.as_bytes()));
        assert_eq!(
            c.decrypt(&raw_frame(KEY, &good)).unwrap(),
            "<xml><A>1</A></xml>"
        );
        // Padding: a zero count, a count over 32, and counts that disagree with the bytes.
        let mut zero = good.clone();
        *zero.last_mut().unwrap() = 0;
        let mut big = good.clone();
        *big.last_mut().unwrap() = 33;
        let mut uneven = good.clone();
        let n = uneven.len();
        uneven[n - 2] ^= 1;
        for bad in [zero, big, uneven] {
            assert_eq!(
                c.decrypt(&raw_frame(KEY, &bad)),
                Err(CryptError::BadPadding)
            );
        }
        // Length: longer than what follows, and absurdly long.
        for declared in [xml.len() as u32 + APPID.len() as u32 + 1, u32::MAX] {
            let frame = pkcs7(frame_body(declared, xml, APPID.as_bytes()));
            assert_eq!(
                c.decrypt(&raw_frame(KEY, &frame)),
                Err(CryptError::BadFrame)
            );
        }
        // Shorter than the random prefix and the length field.
        assert_eq!(
            c.decrypt(&raw_frame(KEY, &pkcs7(vec![1u8; 10]))),
            Err(CryptError::BadFrame)
        );
        // A declared length one short moves a byte of the message into the appid.
        let short = pkcs7(frame_body(xml.len() as u32 - 1, xml, APPID.as_bytes()));
        assert_eq!(
            c.decrypt(&raw_frame(KEY, &short)),
            Err(CryptError::WrongAppid)
        );
        // Another appid, and none.
        for appid in [&b"wx0000000000000000"[..], b""] {
            let frame = pkcs7(frame_body(xml.len() as u32, xml, appid));
            assert_eq!(
                c.decrypt(&raw_frame(KEY, &frame)),
                Err(CryptError::WrongAppid)
            );
        }
        // Not UTF-8.
        let frame = pkcs7(frame_body(2, &[0xff, 0xfe], APPID.as_bytes()));
        assert_eq!(c.decrypt(&raw_frame(KEY, &frame)), Err(CryptError::NotUtf8));
        // Not whole blocks.
        assert_eq!(
            c.decrypt(&STANDARD.encode([0u8; 20])),
            Err(CryptError::BadLength(20))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// What we encrypt for any account comes back exactly, and only for that account.
            #[test]
            fn frames_round_trip(xml in "\\PC{0,300}", appid in "wx[0-9a-f]{16}", random in any::<[u8; 16]>()) {
                let c = MessageCrypt::new(KEY, &appid).unwrap();
                let enc = c.encrypt_with_random(random, &xml);
                prop_assert_eq!(c.decrypt(&enc), Ok(xml.clone()));
                let other = MessageCrypt::new(KEY, "wxffffffffffffffff").unwrap();
                if appid != "wxffffffffffffffff" {
                    prop_assert!(other.decrypt(&enc).is_err());
                }
            }

            /// Any ciphertext, whole blocks or not, base64 or not: an answer, never a panic.
            #[test]
            fn arbitrary_ciphertext_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), text in "\\PC{0,80}") {
                let c = MessageCrypt::new(KEY, APPID).unwrap();
                let _ = c.decrypt(&STANDARD.encode(&bytes));
                let _ = c.decrypt(&text);
            }

            /// Any plaintext frame under the right key: accepted only when it is well formed.
            #[test]
            fn arbitrary_frames_are_checked(plain in proptest::collection::vec(any::<u8>(), 1..8).prop_flat_map(|blocks| proptest::collection::vec(any::<u8>(), blocks.len() * 16))) {
                let c = MessageCrypt::new(KEY, APPID).unwrap();
                if let Ok(xml) = c.decrypt(&raw_frame(KEY, &plain)) {
                    let pad = usize::from(plain[plain.len() - 1]);
                    let body = &plain[..plain.len() - pad];
                    prop_assert_eq!(&body[20..20 + xml.len()], xml.as_bytes());
                    prop_assert_eq!(&body[20 + xml.len()..], APPID.as_bytes());
                }
            }
        }
    }
}
