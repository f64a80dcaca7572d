//! Who acts in an administrative call: a user's session (SQL checks that the user is
//! an owner or admin now) or one of the tenant's API keys. Every such function takes
//! the same four leading parameters, so that the choice is made in one place.

use uuid::Uuid;

use crate::auth::Principal;
use crate::db::{Database, DatabaseError, Param};

/// The parameters that say who acts, as every administrative function takes them:
/// tenant, user, session and API key digest.
struct Acting {
    tenant_id: Uuid,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    key_hash: Option<Vec<u8>>,
}

impl From<&Principal> for Acting {
    fn from(principal: &Principal) -> Self {
        match principal {
            Principal::User(caller) => Self {
                tenant_id: caller.tenant_id,
                user_id: Some(caller.user_id),
                session_id: Some(caller.session_id),
                key_hash: None,
            },
            Principal::Key(key) => Self {
                tenant_id: key.tenant_id,
                user_id: None,
                session_id: None,
                key_hash: Some(key.hash()),
            },
        }
    }
}

impl Database {
    /// Calls a function that takes who acts first (tenant, user, session and API key
    /// digest), then `rest`.
    pub(super) async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        function: &'static str,
        principal: &Principal,
        rest: &[&dyn Param],
    ) -> Result<T, DatabaseError> {
        let acting = Acting::from(principal);
        let mut params: Vec<&dyn Param> = vec![
            &acting.tenant_id,
            &acting.user_id,
            &acting.session_id,
            &acting.key_hash,
        ];
        params.extend_from_slice(rest);
        self.call(function, &params).await
    }
}
