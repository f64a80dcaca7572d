//! One subscriber's place in one room: it hands out a room's events strictly in seq
//! order, each once, reading whatever is missing from the log. Both the WebSocket
//! writer and the SSE stream deliver through it, so neither can skip or repeat an
//! event whatever the notifications do.

use std::sync::Arc;

use uuid::Uuid;

use crate::db::{Database, DatabaseError};
use crate::realtime::{
    log,
    protocol::{EventFrame, ServerFrame},
};

/// What to send to a subscriber, in order.
#[derive(Debug)]
pub enum Delivery {
    /// The next event.
    Event(Arc<EventFrame>),
    /// The subscriber is further behind than the replay window: it reloads history
    /// over REST and continues after `seq`.
    Reset {
        /// The room.
        room_id: Uuid,
        /// The seq to continue after.
        seq: i64,
    },
}

/// A subscriber's position in a room. Events missing before the fan-out's next one
/// are read from the log a page at a time ([`RoomCursor::read_page`]), each page
/// written before the next is read, so that a subscriber catching up holds one page
/// in memory at most and goes at the pace its connection takes.
#[derive(Debug, Clone)]
pub struct RoomCursor {
    /// The room's tenant, for reading its log.
    tenant_id: Uuid,
    /// The room.
    room_id: Uuid,
    /// The seq of the last event handed out.
    last_sent: i64,
    /// The seq up to which the log must be read before the fan-out's events are taken
    /// again: above `last_sent` while catching up. Events the fan-out brings meanwhile
    /// only raise it (they are in the log too), so nothing piles up in memory.
    behind_to: i64,
}

impl Delivery {
    /// The frame's text, as a WebSocket sends it.
    pub fn into_text(self) -> String {
        match self {
            Self::Event(frame) => frame.text.to_string(),
            Self::Reset { room_id, seq } => ServerFrame::Reset { room_id, seq }.text(),
        }
    }
}

impl RoomCursor {
    /// A cursor that has handed out the room's events up to `last_sent`.
    pub fn new(tenant_id: Uuid, room_id: Uuid, last_sent: i64) -> Self {
        Self {
            tenant_id,
            room_id,
            last_sent,
            behind_to: last_sent,
        }
    }

    /// The room.
    pub fn room_id(&self) -> Uuid {
        self.room_id
    }

    /// Whether events remain to be read from the log.
    pub fn is_behind(&self) -> bool {
        self.behind_to > self.last_sent
    }

    /// Takes an event from the fan-out: drops it if already handed out; hands it out
    /// if it is the next one; else it and the events before it are to be read from
    /// the log.
    pub fn accept(&mut self, frame: Arc<EventFrame>, replay_window: i64, out: &mut Vec<Delivery>) {
        if frame.seq <= self.last_sent {
            return;
        }
        if self.is_behind() || frame.seq > self.last_sent + 1 {
            self.catch_up_to(frame.seq, replay_window, out);
            return;
        }
        self.last_sent = frame.seq;
        out.push(Delivery::Event(frame));
    }

    /// Marks the events up to `upto` as to be read from the log, or hands out a reset
    /// when they are more than the replay window.
    pub fn catch_up_to(&mut self, upto: i64, replay_window: i64, out: &mut Vec<Delivery>) {
        if upto <= self.behind_to {
            return;
        }
        if upto - self.last_sent > replay_window {
            self.last_sent = upto;
            self.behind_to = upto;
            out.push(Delivery::Reset {
                room_id: self.room_id,
                seq: upto,
            });
            return;
        }
        self.behind_to = upto;
    }

    /// Hands out the next page of the events to be read from the log.
    pub async fn read_page(
        &mut self,
        db: &Database,
        out: &mut Vec<Delivery>,
    ) -> Result<(), DatabaseError> {
        if !self.is_behind() {
            return Ok(());
        }
        let page = log::read(
            db,
            self.tenant_id,
            self.room_id,
            self.last_sent,
            Some(self.behind_to),
        )
        .await?;
        if page.newest.is_none() || page.frames.is_empty() {
            // The room is gone, or the events with it: nothing more will come.
            self.last_sent = self.behind_to;
            return Ok(());
        }
        for frame in page.frames {
            self.last_sent = frame.seq;
            out.push(Delivery::Event(frame));
        }
        Ok(())
    }
}
