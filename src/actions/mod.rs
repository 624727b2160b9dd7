//! Actions: what the daemon does in answer to events (mint and show a QR code, take and
//! deliver photos). Each runs inside the event dispatcher and may emit events of its own.

pub mod photos;
pub mod qr;
