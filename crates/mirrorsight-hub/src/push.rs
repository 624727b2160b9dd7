//! Photos that follow the scan: customer-service messages from the durable outbox.
//!
//! When photos arrive for a scene a shopper has scanned, the upload puts one pending row per
//! scene and openid in `push_outbox`, due `push.batch_s` after the last photo (a burst is one
//! message). [`PushWorker`] claims due rows for a while (a lease in the row, so instances of a
//! chain, or this one after a restart, never send a row twice at once and a crashed claim is
//! taken over), sends one `news` article linking to the session's gallery, and records the
//! outcome before taking the next:
//!
//! - sent: the row is `sent` (a restart does not send it again);
//! - `45015` (48 h window passed), `43004` (not following), or an unsubscribe recorded meanwhile:
//!   the row is `stopped` and so is the openid, until they interact again (a new scan);
//! - `45047` (too many messages without a reply), `-1` and an unreachable WeChat: retried after
//!   `push.retry_s`, doubling per try, until `push.max_attempts`;
//! - anything else: `failed`, with WeChat's error kept in the row.
//!
//! The window is also checked before sending: a row whose shopper last interacted more than
//! 48 h ago is stopped without asking WeChat.

use std::sync::Arc;
use std::time::Duration;

use mirrorsight_wechat::NewsArticle;
use mirrorsight_wechat::client::{ERRCODE_SEND_LIMIT, ERRCODE_UNSUBSCRIBED, ERRCODE_WINDOW_PASSED};

use crate::http::{AppState, unix_now};
use crate::store::{DuePush, PushOutcome, StoreError};

/// WeChat delivers customer-service messages only this long after the shopper's last
/// interaction.
pub const WINDOW_S: i64 = 48 * 3600;
/// How long a claim lasts: longer than one send with all its retries.
const CLAIM_S: i64 = 120;
/// Rows claimed at once.
const BATCH: usize = 20;
/// The longest pause between tries.
const MAX_BACKOFF_S: i64 = 3600;

/// What to do with a send's result.
pub fn outcome_of(
    result: Result<(), mirrorsight_wechat::Error>,
    attempts_before: i64,
    retry_s: u64,
    max_attempts: u32,
    now: i64,
) -> PushOutcome {
    let error = match result {
        Ok(()) => return PushOutcome::Sent,
        Err(e) => e,
    };
    match error.errcode() {
        Some(ERRCODE_WINDOW_PASSED) | Some(ERRCODE_UNSUBSCRIBED) => PushOutcome::Stopped {
            reason: error.errcode().unwrap_or_default().to_string(),
            stop_openid: true,
        },
        code if code == Some(ERRCODE_SEND_LIMIT)
            || code == Some(-1)
            || (code.is_none() && error.is_transient()) =>
        {
            let tries = attempts_before + 1;
            if tries >= i64::from(max_attempts) {
                return PushOutcome::Failed {
                    error: format!("gave up after {tries} tries: {error}"),
                };
            }
            let retry_s = i64::try_from(retry_s).unwrap_or(MAX_BACKOFF_S);
            let pause = retry_s
                .saturating_mul(1_i64 << attempts_before.clamp(0, 20))
                .min(MAX_BACKOFF_S);
            PushOutcome::Retry {
                due_at: now + pause,
                error: error.to_string(),
            }
        }
        _ => PushOutcome::Failed {
            error: error.to_string(),
        },
    }
}

/// Sends due pushes every second until aborted.
pub struct PushWorker {
    state: Arc<AppState>,
    holder: String,
}

impl PushWorker {
    pub fn new(state: Arc<AppState>) -> Self {
        Self {
            state,
            holder: format!("{}-push", crate::lease::instance_id()),
        }
    }

    /// Runs until `stop` turns true: then it finishes the message in hand (its outcome is
    /// recorded, so a restart neither repeats nor loses it), gives back the rows it claimed
    /// but did not start, and ends.
    pub fn spawn(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = stop.changed() => {
                        // The hub that spawned this is gone without a word: so is this.
                        if changed.is_err() {
                            break;
                        }
                    }
                }
                if *stop.borrow() {
                    break;
                }
                if let Err(e) = self.run_once(Some(&stop)).await {
                    tracing::error!(error = %e, "push outbox round failed");
                }
            }
        })
    }

    /// Claims what is due and sends it, one row after the other; the number of rows finished.
    /// Once `stop` is true the rows not started are given back for whoever runs next.
    pub async fn run_once(
        &self,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<usize, StoreError> {
        let now = unix_now();
        let state = Arc::clone(&self.state);
        let holder = self.holder.clone();
        let due = tokio::task::spawn_blocking(move || {
            state
                .store
                .claim_due_pushes(&holder, now, now + CLAIM_S, BATCH)
        })
        .await
        .map_err(|e| StoreError::Db(format!("push claim task: {e}")))??;
        let mut finished = 0;
        for push in due {
            if stop.is_some_and(|s| *s.borrow()) {
                let state = Arc::clone(&self.state);
                tokio::task::spawn_blocking(move || state.store.release_push(&push))
                    .await
                    .map_err(|e| StoreError::Db(format!("push release task: {e}")))??;
                continue;
            }
            let outcome = self.deliver(&push).await?;
            match &outcome {
                PushOutcome::Sent => {
                    tracing::info!(scene = %push.scene, "photos pushed to the shopper")
                }
                PushOutcome::Stopped { reason, .. } => {
                    tracing::info!(scene = %push.scene, reason = %reason, "push stopped")
                }
                PushOutcome::Retry { error, .. } => {
                    tracing::warn!(scene = %push.scene, error = %error, "push to retry")
                }
                PushOutcome::Failed { error } => {
                    tracing::error!(scene = %push.scene, error = %error, "push failed")
                }
            }
            let state = Arc::clone(&self.state);
            let now = unix_now();
            tokio::task::spawn_blocking(move || state.store.finish_push(&push, &outcome, now))
                .await
                .map_err(|e| StoreError::Db(format!("push finish task: {e}")))??;
            finished += 1;
        }
        Ok(finished)
    }

    async fn deliver(&self, push: &DuePush) -> Result<PushOutcome, StoreError> {
        let now = unix_now();
        if push.stopped {
            return Ok(PushOutcome::Stopped {
                reason: "unsubscribed".into(),
                stop_openid: false,
            });
        }
        if push.last_interaction_at < now - WINDOW_S {
            return Ok(PushOutcome::Stopped {
                reason: "window".into(),
                stop_openid: false,
            });
        }
        let state = Arc::clone(&self.state);
        let scene = push.scene.clone();
        let record = tokio::task::spawn_blocking(move || {
            let record = state.store.scene(&scene)?;
            let photos = match &record {
                Some(r) => state.store.photos_of_scene(&r.scene)?,
                None => Vec::new(),
            };
            Ok::<_, StoreError>((record, photos))
        })
        .await
        .map_err(|e| StoreError::Db(format!("push scene task: {e}")))??;
        let (Some(record), photos) = record else {
            return Ok(PushOutcome::Failed {
                error: "scene gone".into(),
            });
        };
        let live: Vec<_> = photos.iter().filter(|p| p.expired_at.is_none()).collect();
        let Some(last) = live.last() else {
            // Deleted before the batch was due: nothing to announce.
            return Ok(PushOutcome::Stopped {
                reason: "no photos".into(),
                stop_openid: false,
            });
        };
        let config = &self.state.config;
        let article = NewsArticle {
            title: config.callback.title.clone(),
            description: config.callback.description.clone(),
            url: self.state.gallery_url(&record.scene, &record.gallery_key),
            picurl: format!(
                "{}&src=card",
                self.state
                    .photo_url(&record.scene, &last.photo, &record.gallery_key)
            ),
        };
        let result = self
            .state
            .wechat
            .send_custom_news(&push.openid, &article)
            .await;
        Ok(outcome_of(
            result,
            push.attempts,
            config.push.retry_s,
            config.push.max_attempts,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64) -> Result<(), mirrorsight_wechat::Error> {
        Err(mirrorsight_wechat::Error::Api {
            endpoint: "cgi-bin/message/custom/send",
            code,
            message: "x".into(),
        })
    }

    #[test]
    fn each_errcode_has_its_outcome() {
        assert_eq!(outcome_of(Ok(()), 0, 30, 8, 100), PushOutcome::Sent);
        for code in [45015, 43004] {
            assert!(matches!(
                outcome_of(api(code), 0, 30, 8, 100),
                PushOutcome::Stopped { stop_openid: true, ref reason } if *reason == code.to_string()
            ));
        }
        for code in [45047, -1] {
            assert!(matches!(
                outcome_of(api(code), 0, 30, 8, 100),
                PushOutcome::Retry { due_at: 130, .. }
            ));
            // Backoff doubles per try, capped at an hour.
            assert!(matches!(
                outcome_of(api(code), 2, 30, 8, 100),
                PushOutcome::Retry { due_at: 220, .. }
            ));
            assert!(matches!(
                outcome_of(api(code), 6, 600, 8, 100),
                PushOutcome::Retry { due_at: 3700, .. }
            ));
            assert!(matches!(
                outcome_of(api(code), 7, 30, 8, 100),
                PushOutcome::Failed { .. }
            ));
        }
        assert!(matches!(
            outcome_of(api(40003), 0, 30, 8, 100),
            PushOutcome::Failed { .. }
        ));
    }
}
