//! The broker over a Citus cluster: one LISTEN connection per node. A notification
//! goes out from the node whose transaction sent it, which on Citus is the worker
//! where a statement ran as well as the coordinator, so an instance LISTENs on the
//! coordinator (its listen URL) and on every worker the coordinator's metadata lists
//! (`pg_dist_node`), each at the host and port recorded there with the URL's other
//! settings. The list is read again every [`NODES_REFRESH`], so that an added worker
//! is listened to and a removed one let go.
//!
//! Its guarantee is the single broker's, for the union: a channel is LISTENed on every
//! node before a `Listen` is answered, every connection's notifications are handed on
//! in that node's commit order, and every connection that comes (back) up says
//! `Reconnected`, so that what was sent meanwhile, on whichever node, is read from the
//! logs. Notifications of different nodes are not ordered among themselves: the hub
//! orders a room's events by seq and reads the log for a gap, as it does after a
//! reconnection. It is up only while every connection is.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot, watch};

use crate::realtime::broker::{self, BrokerHandle, Command, Notice};

/// How often the coordinator's list of workers is read again.
const NODES_REFRESH: Duration = Duration::from_secs(10);

/// How often the cluster's readiness is recomputed from its connections'.
const READINESS_PERIOD: Duration = Duration::from_millis(100);

/// Starts the brokers of a Citus cluster whose coordinator `url` reaches, and the task
/// that keeps them to the coordinator's list of workers; answers one handle for all.
pub fn spawn(
    url: String,
    ca_file: Option<String>,
    notices: mpsc::UnboundedSender<Notice>,
) -> BrokerHandle {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (up_tx, up_rx) = watch::channel(false);
    tokio::spawn(supervise(url, ca_file, commands_rx, notices, up_tx));
    BrokerHandle {
        commands: commands_tx,
        up: up_rx,
    }
}

/// The workers the coordinator lists as active primaries (its own group, 0, is the
/// coordinator itself, which the listen URL reaches).
async fn workers(url: &str, ca_file: Option<&str>) -> anyhow::Result<HashSet<(String, u16)>> {
    let target = crate::db::tls::target(url, ca_file)?;
    let (client, connection) = target.config.connect(target.tls).await?;
    let driver = tokio::spawn(connection);
    let rows = client
        .query(
            "select nodename, nodeport from pg_dist_node
             where isactive and noderole = 'primary' and groupid <> 0",
            &[],
        )
        .await;
    drop(client);
    let _ = driver.await;
    Ok(rows?
        .into_iter()
        .map(|row| {
            let port: i32 = row.get(1);
            (row.get(0), u16::try_from(port).unwrap_or_default())
        })
        .collect())
}

async fn supervise(
    url: String,
    ca_file: Option<String>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    notices: mpsc::UnboundedSender<Notice>,
    up: watch::Sender<bool>,
) {
    // The room channels asked for, which a broker started later LISTENs on too.
    let mut channels: HashSet<String> = HashSet::new();
    let coordinator = broker::spawn(
        url.clone(),
        ca_file.clone(),
        None,
        channels.clone(),
        notices.clone(),
    );
    let mut nodes: HashMap<(String, u16), BrokerHandle> = HashMap::new();
    let mut refresh = tokio::time::interval(NODES_REFRESH);
    let mut readiness = tokio::time::interval(READINESS_PERIOD);
    loop {
        tokio::select! {
            _ = refresh.tick() => match workers(&url, ca_file.as_deref()).await {
                Ok(listed) => {
                    nodes.retain(|node, _| {
                        let kept = listed.contains(node);
                        if !kept {
                            tracing::info!(host = %node.0, port = node.1, "no longer LISTENing on a worker the coordinator dropped");
                        }
                        kept
                    });
                    for node in listed {
                        if let std::collections::hash_map::Entry::Vacant(entry) = nodes.entry(node) {
                            let (host, port) = entry.key().clone();
                            tracing::info!(host = %host, port, "LISTENing on a worker");
                            entry.insert(broker::spawn(
                                url.clone(),
                                ca_file.clone(),
                                Some((host, port)),
                                channels.clone(),
                                notices.clone(),
                            ));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read the Citus cluster's workers; keeping those known");
                }
            },
            _ = readiness.tick() => {
                let all_up = *coordinator.up.borrow()
                    && nodes.values().all(|node| *node.up.borrow());
                up.send_if_modified(|was| std::mem::replace(was, all_up) != all_up);
            },
            command = commands.recv() => match command {
                Some(Command::Listen { channel, done }) => {
                    channels.insert(channel.clone());
                    let mut answers = Vec::new();
                    for handle in std::iter::once(&coordinator).chain(nodes.values()) {
                        let (answered, answer) = oneshot::channel();
                        let _ = handle.commands.send(Command::Listen {
                            channel: channel.clone(),
                            done: answered,
                        });
                        answers.push(answer);
                    }
                    // A broker dropped meanwhile (its worker left the cluster) answers
                    // nothing, and needs not.
                    tokio::spawn(async move {
                        for answer in answers {
                            let _ = answer.await;
                        }
                        let _ = done.send(());
                    });
                }
                Some(Command::Unlisten { channel }) => {
                    channels.remove(&channel);
                    for handle in std::iter::once(&coordinator).chain(nodes.values()) {
                        let _ = handle.commands.send(Command::Unlisten {
                            channel: channel.clone(),
                        });
                    }
                }
                None => return,
            },
        }
    }
}
