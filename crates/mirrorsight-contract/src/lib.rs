//! Wire types that other programs rely on. Everything here is a contract:
//! field names and spellings change only together with `docs/`.

pub mod backend;
pub mod events;
