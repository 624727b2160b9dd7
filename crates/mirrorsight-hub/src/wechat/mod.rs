//! The official-account side of WeChat: callback signatures, safe-mode encryption, and the
//! event XML in both directions. Facts: `shared/notes/wechat-api.md`.

pub mod crypto;
pub mod signature;
pub mod xml;

pub use crypto::{CryptError, MessageCrypt};
pub use signature::{signature, verify_signature};
pub use xml::{Article, Incoming, XmlError};
