//! The feeds open on this instance, by tenant: whose feed hears the presence changes
//! of a user of the tenant (those of them who share a room with that user, which the
//! database says). A feed is counted once per subscription, so a user with two
//! connections stays until both are gone.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use uuid::Uuid;

/// Open feeds: tenant → user → subscriptions.
#[derive(Debug, Default)]
pub struct Feeds {
    open: Mutex<HashMap<Uuid, HashMap<Uuid, usize>>>,
}

impl Feeds {
    /// A subscription to the user's feed began here.
    pub fn opened(&self, tenant_id: Uuid, user_id: Uuid) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        *open
            .entry(tenant_id)
            .or_default()
            .entry(user_id)
            .or_default() += 1;
    }

    /// A subscription to the user's feed ended here.
    pub fn closed(&self, tenant_id: Uuid, user_id: Uuid) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(users) = open.get_mut(&tenant_id) else {
            return;
        };
        if let Some(count) = users.get_mut(&user_id) {
            *count -= 1;
            if *count == 0 {
                users.remove(&user_id);
            }
        }
        if users.is_empty() {
            open.remove(&tenant_id);
        }
    }

    /// The users of the tenant with a feed open here (none for an id that is no
    /// tenant's, such as a room's).
    pub fn in_tenant(&self, tenant_id: Uuid) -> Vec<Uuid> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&tenant_id)
            .map(|users| users.keys().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_stays_open_until_its_last_subscription_closes() {
        let feeds = Feeds::default();
        let (tenant, user) = (Uuid::now_v7(), Uuid::now_v7());
        feeds.opened(tenant, user);
        feeds.opened(tenant, user);
        feeds.closed(tenant, user);
        assert_eq!(feeds.in_tenant(tenant), [user]);
        feeds.closed(tenant, user);
        assert!(feeds.in_tenant(tenant).is_empty());
        assert!(feeds.in_tenant(Uuid::now_v7()).is_empty());
    }
}
