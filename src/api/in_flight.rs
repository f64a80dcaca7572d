//! Bounds on each user's requests on an instance: how many per second (a token
//! bucket, 429 `rate_limited` with `Retry-After` beyond it) and how many in flight at
//! once (429 `too_many_requests`); and on each tenant's: how many run at once (more
//! wait for a turn, or answer 503 `busy` when none comes within the pool's wait). A
//! user or a tenant with many concurrent or rapid requests would otherwise hold the
//! pool's connections and the database's CPU that every other tenant needs. Counted from the verified bearer token, before the route runs, so a
//! refusal costs no database work. A WebSocket or event stream counts only while its
//! upgrade or subscription is being answered (open streams and their frames have
//! their own bounds).

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result, http::header};

use crate::api::security::VerifiedBearer;
use crate::error::ApiError;
use crate::state::AppState;

/// The middleware; the limit is `AppState::limits.requests`.
pub struct UserRequests;

impl<E: Endpoint> Middleware<E> for UserRequests {
    type Output = UserRequestsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        UserRequestsEndpoint { inner }
    }
}

/// An endpoint wrapped by [`UserRequests`].
pub struct UserRequestsEndpoint<E> {
    /// The routes.
    inner: E,
}

/// The bearer token of a request, if it carries one.
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl<E: Endpoint> Endpoint for UserRequestsEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        // An invalid token is not counted: the route's security check answers 401.
        let verified = request
            .data::<AppState>()
            .zip(bearer_token(&request))
            .and_then(|(state, token)| {
                Some(VerifiedBearer {
                    caller: state.tokens.verify(token).ok()?,
                    token: token.to_owned(),
                })
            });
        let state = request.data::<AppState>();
        let _slot = match state.zip(verified.as_ref()) {
            Some((state, VerifiedBearer { caller, .. })) => {
                let allowance = state.limits.request_rate.acquire(&caller.user_id).await;
                if allowance.retry_after.is_some() {
                    return Err(ApiError::too_many(
                        &allowance,
                        "rate_limited",
                        "Too many requests; retry after the time in Retry-After",
                    )
                    .into());
                }
                let slot = state
                    .limits
                    .requests
                    .open(caller.user_id)
                    .map_err(|refusal| {
                        ApiError::from(refusal).with_headers(vec![("retry-after", "1".to_owned())])
                    })?;
                let wait = std::time::Duration::from_millis(state.config.db_pool_timeout_ms);
                let Some(turn) = state.limits.tenant_turns.take(caller.tenant_id, wait).await
                else {
                    return Err(ApiError::new(
                        poem::http::StatusCode::SERVICE_UNAVAILABLE,
                        "busy",
                        "This tenant's requests are taking all of the server's share for it; retry in a moment",
                    )
                    .with_headers(vec![("retry-after", "1".to_owned())])
                    .into());
                };
                Some((slot, turn))
            }
            None => None,
        };
        // The route's security check takes the caller verified here instead of
        // verifying the token again.
        if let Some(verified) = verified {
            request.extensions_mut().insert(verified);
        }
        self.inner
            .call(request)
            .await
            .map(IntoResponse::into_response)
    }
}
