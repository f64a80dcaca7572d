//! The tenant's API keys, managed by its owners and admins.

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json, types::Example};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::security::BearerAuth;
use crate::auth::ApiKeySecret;
use crate::db::{ApiKey, NewApiKey};
use crate::error::ApiError;
use crate::state::AppState;

/// A key to create.
#[derive(Debug, Object)]
#[oai(example)]
pub struct CreateApiKeyRequest {
    /// What the key is for (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: String,
}

impl Example for CreateApiKeyRequest {
    fn example() -> Self {
        Self {
            name: "backend".to_owned(),
        }
    }
}

/// A new key, with its secret: shown this once and never again.
#[derive(Debug, Object)]
pub struct CreatedApiKey {
    /// The key to send as `X-Api-Key`.
    pub key: String,
    /// The stored description of the key.
    pub api_key: ApiKey,
}

/// The tenant's keys.
#[derive(Debug, Object)]
pub struct ApiKeyList {
    /// Every key, newest first, revoked ones included.
    pub items: Vec<ApiKey>,
}

/// The answer to a key creation.
#[derive(ApiResponse)]
pub enum ApiKeyCreated {
    /// The key exists.
    #[oai(status = 201)]
    Created(Json<CreatedApiKey>),
}

/// No content.
#[derive(ApiResponse)]
pub enum ApiKeyRevoked {
    /// The key is refused from now on.
    #[oai(status = 204)]
    Revoked,
}

/// API keys.
#[derive(Default)]
pub struct ApiKeysApi;

#[OpenApi(tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Create an API key (owners and admins)
    #[oai(path = "/v1/api-keys", method = "post", operation_id = "createApiKey")]
    async fn create_api_key(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateApiKeyRequest>,
    ) -> Result<ApiKeyCreated, ApiError> {
        let secret = ApiKeySecret::generate(auth.0.tenant_id);
        let key = NewApiKey {
            key_id: Uuid::now_v7(),
            name: body.0.name,
            prefix: secret.display_prefix(),
            secret_hash: secret.hash(),
        };
        let api_key = state.db.api_key_create(&auth.0, &key).await?;
        Ok(ApiKeyCreated::Created(Json(CreatedApiKey {
            key: secret.key,
            api_key,
        })))
    }

    /// List API keys (owners and admins)
    #[oai(path = "/v1/api-keys", method = "get", operation_id = "listApiKeys")]
    async fn list_api_keys(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<Json<ApiKeyList>, ApiError> {
        let items = state.db.api_key_list(&auth.0).await?;
        Ok(Json(ApiKeyList { items }))
    }

    /// Revoke an API key (owners and admins)
    #[oai(
        path = "/v1/api-keys/:key_id",
        method = "delete",
        operation_id = "revokeApiKey"
    )]
    async fn revoke_api_key(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The key's id.
        key_id: Path<Uuid>,
    ) -> Result<ApiKeyRevoked, ApiError> {
        state.db.api_key_revoke(&auth.0, key_id.0).await?;
        Ok(ApiKeyRevoked::Revoked)
    }
}
