//! Reading a room's log for its subscribers, one page at a time, each event serialised
//! once as its frame: the one way the hub (for a room's gaps) and a cursor (for one
//! subscriber's) read it.

use std::sync::Arc;

use uuid::Uuid;

use crate::db::{Database, DatabaseError};
use crate::realtime::protocol::EventFrame;

/// Events read per query.
pub const PAGE: i32 = 500;

/// Bytes of event JSON read per query (at least one event): what a subscriber
/// catching up, or a room filling a gap, holds in memory at a time, whatever the
/// size of its messages.
pub const PAGE_BYTES: i32 = 1024 * 1024;

/// One page of a room's log.
pub struct Page {
    /// The events after the seq read from, in seq order, up to the bound and at most
    /// [`PAGE`] and [`PAGE_BYTES`].
    pub frames: Vec<Arc<EventFrame>>,
    /// The seq read up to: the last event's, or the seq read from when there was none.
    pub read_to: i64,
    /// The room's newest seq when read; `None` when the room is gone.
    pub newest: Option<i64>,
}

/// Reads the events of a room after `after`, up to `upto` (or the newest).
pub async fn read(
    db: &Database,
    tenant_id: Uuid,
    room_id: Uuid,
    after: i64,
    upto: Option<i64>,
) -> Result<Page, DatabaseError> {
    let stretch = db
        .room_events_after(tenant_id, room_id, after, upto, PAGE, PAGE_BYTES)
        .await?;
    let frames: Vec<Arc<EventFrame>> = stretch.items.into_iter().map(EventFrame::new).collect();
    Ok(Page {
        read_to: frames.last().map_or(after, |frame| frame.seq),
        frames,
        newest: stretch.last_seq,
    })
}
