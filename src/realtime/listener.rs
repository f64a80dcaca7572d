//! The instance's one LISTEN connection: a dedicated session (never a pooled one),
//! LISTENing on the channels of rooms with local subscribers and on the presence
//! channel. When it drops, it reconnects with backoff, LISTENs again, and tells the
//! dispatcher to read every subscribed room's log from where delivery stopped.

use std::{collections::HashSet, time::Duration};

use futures_util::{StreamExt, stream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::AsyncMessage;

use crate::metrics::METRICS;

/// The channel of presence signals, which every instance LISTENs on.
pub const PRESENCE_CHANNEL: &str = "hark_presence";

/// The channel of revoked sessions, users and tenants (`hark_api.announce_revocation`),
/// which every instance LISTENs on.
pub const REVOCATION_CHANNEL: &str = "hark_revocations";

/// What the listener tells the dispatcher.
#[derive(Debug)]
pub enum Notice {
    /// A notification arrived.
    Notification {
        /// The channel.
        channel: String,
        /// The payload.
        payload: String,
    },
    /// The connection was (re-)established and every channel is LISTENed again:
    /// whatever happened meanwhile must be read from the log.
    Reconnected,
}

/// What the hub asks of the listener.
#[derive(Debug)]
pub enum Command {
    /// LISTEN on a channel; `done` fires once the LISTEN is active.
    Listen {
        /// The channel.
        channel: String,
        /// Fired when active.
        done: oneshot::Sender<()>,
    },
    /// UNLISTEN a channel.
    Unlisten {
        /// The channel.
        channel: String,
    },
}

/// The hub's handle on the listener.
#[derive(Clone)]
pub struct ListenerHandle {
    /// Commands to the listener task.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Whether the connection is up and LISTENing.
    pub up: watch::Receiver<bool>,
}

/// Starts the listener task.
pub fn spawn(
    url: String,
    ca_file: Option<String>,
    notices: mpsc::UnboundedSender<Notice>,
) -> ListenerHandle {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (up_tx, up_rx) = watch::channel(false);
    tokio::spawn(run(url, ca_file, commands_rx, notices, up_tx));
    ListenerHandle {
        commands: commands_tx,
        up: up_rx,
    }
}

fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

async fn run(
    url: String,
    ca_file: Option<String>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    notices: mpsc::UnboundedSender<Notice>,
    up: watch::Sender<bool>,
) {
    let mut listening: HashSet<String> =
        HashSet::from([PRESENCE_CHANNEL.to_owned(), REVOCATION_CHANNEL.to_owned()]);
    // Listen commands that arrived while the connection was down, answered once it is up.
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = match crate::db::tls::target(&url, ca_file.as_deref()) {
            Ok(target) => target
                .config
                .connect(target.tls)
                .await
                .map_err(anyhow::Error::from),
            Err(error) => Err(error),
        };
        let (client, mut connection) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "LISTEN connection failed");
                // Keep taking commands while down, so that the set to LISTEN on stays right.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        command = commands.recv() => match command {
                            Some(Command::Listen { channel, done }) => {
                                listening.insert(channel);
                                waiting.push(done);
                            }
                            Some(Command::Unlisten { channel }) => {
                                listening.remove(&channel);
                            }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // The connection must be driven by us, not spawned: a spawned connection
        // drops notifications.
        let (lost_tx, mut lost_rx) = oneshot::channel::<()>();
        let driver_notices = notices.clone();
        tokio::spawn(async move {
            let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        let notice = Notice::Notification {
                            channel: notification.channel().to_owned(),
                            payload: notification.payload().to_owned(),
                        };
                        if driver_notices.send(notice).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection lost");
                        break;
                    }
                }
            }
            let _ = lost_tx.send(());
        });

        let statement: String = listening
            .iter()
            .map(|channel| format!("LISTEN {};", quote(channel)))
            .collect();
        if let Err(error) = client.batch_execute(&statement).await {
            tracing::warn!(%error, "could not LISTEN after connecting");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        up.send_replace(true);
        METRICS.listener_up.set(1);
        METRICS.listener_connects.inc();
        METRICS.listen_channels.set(listening.len() as i64);
        tracing::info!(channels = listening.len(), "LISTEN connection up");
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if notices.send(Notice::Reconnected).is_err() {
            return;
        }

        loop {
            tokio::select! {
                _ = &mut lost_rx => break,
                command = commands.recv() => match command {
                    Some(Command::Listen { channel, done }) => {
                        if listening.contains(&channel) {
                            let _ = done.send(());
                            continue;
                        }
                        listening.insert(channel.clone());
                        METRICS.listen_channels.set(listening.len() as i64);
                        match client.batch_execute(&format!("LISTEN {}", quote(&channel))).await {
                            Ok(()) => drop(done.send(())),
                            Err(error) => {
                                tracing::warn!(%error, "LISTEN failed");
                                waiting.push(done);
                                break;
                            }
                        }
                    }
                    Some(Command::Unlisten { channel }) => {
                        let removed = listening.remove(&channel);
                        METRICS.listen_channels.set(listening.len() as i64);
                        if removed
                            && let Err(error) = client.batch_execute(&format!("UNLISTEN {}", quote(&channel))).await
                        {
                            tracing::warn!(%error, "UNLISTEN failed");
                            break;
                        }
                    }
                    None => return,
                },
            }
        }
        up.send_replace(false);
        METRICS.listener_up.set(0);
        drop(client);
    }
}
