//! The broker: how events arrive. The instance's one LISTEN connection is a dedicated
//! session (never a pooled one), LISTENing on the channels of rooms with local
//! subscribers and on the presence, revocation and webhook channels; each notification is
//! decoded here into one typed [`Notice`]. When the connection drops, it reconnects
//! with backoff, LISTENs again, and says so ([`Notice::Reconnected`]), so that every
//! subscribed room's log is read from where delivery stopped.
//!
//! Its guarantee: every notification committed on a channel while it is LISTENed is
//! handed on, in commit order, as long as the connection stays up; a loss of the
//! connection is always followed by `Reconnected` once it is back.

use std::{collections::HashSet, time::Duration};

use futures_util::{StreamExt, stream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::AsyncMessage;

use uuid::Uuid;

use crate::db::RoomEvent;
use crate::metrics::METRICS;
use crate::realtime::presence::Signal;
use crate::realtime::registry::Revocation;

/// The channel of presence signals, which every instance LISTENs on.
pub const PRESENCE_CHANNEL: &str = "hark_presence";

/// The channel of revoked sessions, users and tenants (`hark_api.announce_revocation`),
/// which every instance LISTENs on.
pub const REVOCATION_CHANNEL: &str = "hark_revocations";

/// The channel that says webhook deliveries were queued (`hark_api.webhook_enqueue`),
/// which every instance LISTENs on to wake its delivery worker.
pub const WEBHOOK_CHANNEL: &str = "hark_webhooks";

/// What the broker hands on, decoded.
#[derive(Debug)]
pub enum Notice {
    /// A room channel's notification.
    Room(RoomNotification),
    /// A presence signal of some instance.
    Presence(Signal),
    /// A session, user or tenant was revoked.
    Revocation(Revocation),
    /// Webhook deliveries were queued.
    Webhooks,
    /// The connection was (re-)established and every channel is LISTENed again:
    /// whatever happened meanwhile must be read from the log.
    Reconnected,
}

/// A room channel's notification, as `hark_api.publish_events` and
/// `hark_api.publish_signal` write it: the kind says which.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomNotification {
    /// Events just appended to the room's log, in seq order.
    Events {
        /// The room's tenant.
        tenant_id: Uuid,
        /// The room.
        room_id: Uuid,
        /// The events.
        events: Vec<RoomEvent>,
        /// The W3C trace context of the write, when it was traced.
        traceparent: Option<String>,
    },
    /// Events too big for the payload: the log holds them, up to `seq`.
    Wake {
        /// The room's tenant.
        tenant_id: Uuid,
        /// The room.
        room_id: Uuid,
        /// The newest seq written.
        seq: i64,
        /// The W3C trace context of the write, when it was traced.
        traceparent: Option<String>,
    },
    /// A member is typing.
    Typing {
        /// The room.
        room_id: Uuid,
        /// Who is typing.
        user: serde_json::Value,
    },
    /// A member's read marker moved.
    Read {
        /// The room.
        room_id: Uuid,
        /// Who read.
        user: serde_json::Value,
        /// Up to which seq.
        seq: i64,
    },
}

impl RoomNotification {
    /// The room it is about.
    pub fn room_id(&self) -> Uuid {
        match self {
            Self::Events { room_id, .. }
            | Self::Wake { room_id, .. }
            | Self::Typing { room_id, .. }
            | Self::Read { room_id, .. } => *room_id,
        }
    }

    /// The W3C trace context of the write that caused it, when it was traced.
    pub fn traceparent(&self) -> Option<&str> {
        match self {
            Self::Events { traceparent, .. } | Self::Wake { traceparent, .. } => {
                traceparent.as_deref()
            }
            Self::Typing { .. } | Self::Read { .. } => None,
        }
    }
}

/// Decodes a notification by its channel; an unreadable one is logged and skipped
/// (the log remains, and the next event of the room fills any gap).
fn decode(channel: &str, payload: &str) -> Option<Notice> {
    let decoded = match channel {
        PRESENCE_CHANNEL => serde_json::from_str(payload).map(Notice::Presence),
        REVOCATION_CHANNEL => serde_json::from_str(payload).map(Notice::Revocation),
        WEBHOOK_CHANNEL => Ok(Notice::Webhooks),
        _ => serde_json::from_str(payload).map(Notice::Room),
    };
    match decoded {
        Ok(notice) => Some(notice),
        Err(error) => {
            tracing::warn!(%error, channel, "unreadable notification");
            None
        }
    }
}

/// What the node asks of the broker.
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

/// The node's handle on the broker.
#[derive(Clone)]
pub struct BrokerHandle {
    /// Commands to the listener task.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Whether the connection is up and LISTENing.
    pub up: watch::Receiver<bool>,
}

/// Starts the broker's task: a LISTEN connection to `url`, or, with `node`, to that
/// host and port with the rest of `url`'s settings (a Citus worker, see
/// [`crate::realtime::cluster`]), LISTENing on the standard channels and `channels`.
pub fn spawn(
    url: String,
    ca_file: Option<String>,
    node: Option<(String, u16)>,
    channels: HashSet<String>,
    notices: mpsc::UnboundedSender<Notice>,
) -> BrokerHandle {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (up_tx, up_rx) = watch::channel(false);
    let endpoint = Endpoint { url, ca_file, node };
    tokio::spawn(run(endpoint, channels, commands_rx, notices, up_tx));
    BrokerHandle {
        commands: commands_tx,
        up: up_rx,
    }
}

/// Where a LISTEN connection goes.
struct Endpoint {
    /// The database URL.
    url: String,
    /// Root certificates for TLS, when not in the URL.
    ca_file: Option<String>,
    /// Another host and port than the URL's, with its other settings.
    node: Option<(String, u16)>,
}

impl Endpoint {
    /// The connection settings, parsed anew for every attempt.
    fn target(&self) -> anyhow::Result<crate::db::tls::Target> {
        let mut target = crate::db::tls::target(&self.url, self.ca_file.as_deref())?;
        if let Some((host, port)) = &self.node {
            target.config = on_node(&target.config, host, *port);
        }
        Ok(target)
    }
}

/// The settings of `config` for another host and port.
fn on_node(config: &tokio_postgres::Config, host: &str, port: u16) -> tokio_postgres::Config {
    let mut node = tokio_postgres::Config::new();
    node.host(host).port(port).ssl_mode(config.get_ssl_mode());
    if let Some(user) = config.get_user() {
        node.user(user);
    }
    if let Some(password) = config.get_password() {
        node.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        node.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        node.options(options);
    }
    if let Some(application_name) = config.get_application_name() {
        node.application_name(application_name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        node.connect_timeout(*timeout);
    }
    node
}

fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

/// The channels every instance LISTENs on, whatever its subscribers.
pub fn standard_channels() -> HashSet<String> {
    HashSet::from([
        PRESENCE_CHANNEL.to_owned(),
        REVOCATION_CHANNEL.to_owned(),
        WEBHOOK_CHANNEL.to_owned(),
    ])
}

async fn run(
    endpoint: Endpoint,
    channels: HashSet<String>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    notices: mpsc::UnboundedSender<Notice>,
    up: watch::Sender<bool>,
) {
    let mut listening: HashSet<String> = standard_channels();
    listening.extend(channels);
    // Listen commands that arrived while the connection was down, answered once it is up.
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = match endpoint.target() {
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
                tracing::warn!(%error, node = ?endpoint.node, retry_in_ms = backoff.as_millis() as u64, "LISTEN connection failed");
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
                        let Some(notice) = decode(notification.channel(), notification.payload())
                        else {
                            continue;
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
        tracing::info!(channels = listening.len(), node = ?endpoint.node, "LISTEN connection up");
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
