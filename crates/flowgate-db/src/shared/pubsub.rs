//! Publish/subscribe: one broadcast channel per subscribed name in the process, fed by a Redis
//! subscription kept alive in the background (or directly by `publish` in process).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::broadcast;

/// What a subscriber of a channel receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A published message.
    Message(String),
    /// The subscription was re-established after Redis was unreachable: messages may have been
    /// missed, so anything cached on their account should be dropped.
    Resync,
}

/// How many notifications a slow subscriber may fall behind before it misses some.
const CHANNEL_CAPACITY: usize = 1024;

/// The process's subscribed channels, by (unprefixed) name.
#[derive(Debug, Default)]
pub(super) struct Channels {
    senders: std::sync::Mutex<HashMap<String, broadcast::Sender<Notification>>>,
}

impl Channels {
    /// Delivers `message` to this process's subscribers of `channel`, if any.
    pub(super) fn deliver(&self, channel: &str, message: &str) {
        if let Some(sender) = self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(channel) {
            let _ = sender.send(Notification::Message(message.to_owned()));
        }
    }

    /// A receiver of `channel`. The first subscription to a name creates its broadcast channel and
    /// hands its sender to `on_new` (under the lock, so a name is set up once).
    pub(super) fn subscribe(
        &self,
        channel: &str,
        on_new: impl FnOnce(broadcast::Sender<Notification>),
    ) -> broadcast::Receiver<Notification> {
        let mut senders = self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = senders.get(channel) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
        senders.insert(channel.to_owned(), sender.clone());
        on_new(sender);
        receiver
    }
}

/// Keeps a Redis subscription to `channel` alive and forwards its messages to `sender`, until no
/// receiver is left.
pub(super) async fn listen(client: redis::Client, channel: String, sender: broadcast::Sender<Notification>) {
    use futures_util::StreamExt;
    let mut first = true;
    while sender.receiver_count() > 0 {
        let pubsub = match tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await {
            Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                Ok(()) => Some(pubsub),
                Err(error) => {
                    tracing::warn!(%error, channel, "Redis subscribe failed");
                    None
                }
            },
            Ok(Err(error)) => {
                tracing::warn!(%error, channel, "Redis unreachable for subscription; retrying");
                None
            }
            Err(_) => None,
        };
        let Some(mut pubsub) = pubsub else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if !first {
            tracing::info!(channel, "Redis subscription re-established");
            let _ = sender.send(Notification::Resync);
        }
        first = false;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            if let Ok(payload) = message.get_payload::<String>()
                && sender.send(Notification::Message(payload)).is_err()
            {
                return;
            }
        }
        tracing::warn!(channel, "Redis subscription lost; reconnecting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
