//! Users of each tenant counted on this instance: whose own feed is open here (the
//! feeds that hear the presence changes of users they share a room with), and who is
//! connected here (what the instance tells the database, for webhooks that go to users
//! who are not connected). A user is counted once per subscription, so one with two
//! connections stays until both are gone.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use uuid::Uuid;

/// Tenant → user → subscriptions.
#[derive(Debug, Default)]
pub struct TenantUsers {
    counts: Mutex<HashMap<Uuid, HashMap<Uuid, usize>>>,
}

impl TenantUsers {
    /// Counts one more subscription of the user; answers whether it is their first.
    pub fn opened(&self, tenant_id: Uuid, user_id: Uuid) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts
            .entry(tenant_id)
            .or_default()
            .entry(user_id)
            .or_default();
        *count += 1;
        *count == 1
    }

    /// Counts one subscription of the user less; answers whether it was their last.
    pub fn closed(&self, tenant_id: Uuid, user_id: Uuid) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(users) = counts.get_mut(&tenant_id) else {
            return false;
        };
        let mut last = false;
        if let Some(count) = users.get_mut(&user_id) {
            *count -= 1;
            if *count == 0 {
                users.remove(&user_id);
                last = true;
            }
        }
        if users.is_empty() {
            counts.remove(&tenant_id);
        }
        last
    }

    /// The users of the tenant counted here (none for an id that is no tenant's, such
    /// as a room's).
    pub fn in_tenant(&self, tenant_id: Uuid) -> Vec<Uuid> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .get(&tenant_id)
            .map(|users| users.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every (tenant, user) counted here.
    pub fn all(&self) -> Vec<(Uuid, Uuid)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .iter()
            .flat_map(|(tenant, users)| users.keys().map(move |user| (*tenant, *user)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_stays_counted_until_their_last_subscription_closes() {
        let users = TenantUsers::default();
        let (tenant, user) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(users.opened(tenant, user));
        assert!(!users.opened(tenant, user));
        assert!(!users.closed(tenant, user));
        assert_eq!(users.in_tenant(tenant), [user]);
        assert_eq!(users.all(), [(tenant, user)]);
        assert!(users.closed(tenant, user));
        assert!(users.in_tenant(tenant).is_empty());
        assert!(users.all().is_empty());
        assert!(users.in_tenant(Uuid::now_v7()).is_empty());
    }
}
