//! One subscriber's place in one room: it hands out a room's events strictly in seq
//! order, each once, reading whatever is missing from the log. Both the WebSocket
//! writer and the SSE stream deliver through it, so neither can skip or repeat an
//! event whatever the notifications do.

use std::sync::Arc;

use uuid::Uuid;

use crate::db::{Database, DatabaseError};
use crate::realtime::{log, protocol::EventFrame};

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

/// A subscriber's position in a room.
#[derive(Debug, Clone)]
pub struct RoomCursor {
    /// The room's tenant, for reading its log.
    pub tenant_id: Uuid,
    /// The room.
    pub room_id: Uuid,
    /// The seq of the last event handed out.
    pub last_sent: i64,
}

impl RoomCursor {
    /// Takes an event from the fan-out: drops it if already handed out, reads the log
    /// first if events are missing before it.
    pub async fn accept(
        &mut self,
        frame: Arc<EventFrame>,
        db: &Database,
        replay_window: i64,
        out: &mut Vec<Delivery>,
    ) -> Result<(), DatabaseError> {
        if frame.seq <= self.last_sent {
            return Ok(());
        }
        if frame.seq > self.last_sent + 1 {
            self.catch_up(frame.seq - 1, db, replay_window, out).await?;
        }
        if frame.seq == self.last_sent + 1 {
            self.last_sent = frame.seq;
            out.push(Delivery::Event(frame));
        }
        Ok(())
    }

    /// Hands out every event up to `upto` from the log, or a reset when that is more
    /// than the replay window.
    pub async fn catch_up(
        &mut self,
        upto: i64,
        db: &Database,
        replay_window: i64,
        out: &mut Vec<Delivery>,
    ) -> Result<(), DatabaseError> {
        if upto <= self.last_sent {
            return Ok(());
        }
        if upto - self.last_sent > replay_window {
            self.last_sent = upto;
            out.push(Delivery::Reset {
                room_id: self.room_id,
                seq: upto,
            });
            return Ok(());
        }
        while self.last_sent < upto {
            let page =
                log::read(db, self.tenant_id, self.room_id, self.last_sent, Some(upto)).await?;
            if page.newest.is_none() || page.frames.is_empty() {
                // The room is gone, or the events with it: nothing more will come.
                self.last_sent = upto;
                break;
            }
            for frame in page.frames {
                self.last_sent = frame.seq;
                out.push(Delivery::Event(frame));
            }
        }
        Ok(())
    }
}
