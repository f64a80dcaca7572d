//! Standard Webhooks signatures: a secret is `whsec_` and the base64 of its key; a
//! delivery's `webhook-signature` header is `v1,<base64 of HMAC-SHA256 of
//! "<webhook-id>.<webhook-timestamp>.<body>">`, once per secret that signs, separated
//! by spaces (the current secret and, during a rotation's grace, the previous one), so
//! that receivers verify with the `standardwebhooks` libraries.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// What every secret starts with.
const SECRET_PREFIX: &str = "whsec_";

/// Bytes of key in a new secret (the spec asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// A new random secret, `whsec_<base64>`.
pub fn generate_secret() -> String {
    let mut key = [0_u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header of one attempt. Secrets that cannot be read (none
/// that this server drew) are skipped, and logged.
pub fn signature_header(
    secrets: &[String],
    message_id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    let signed = format!("{message_id}.{timestamp}.{body}");
    secrets
        .iter()
        .filter_map(|secret| {
            let key = secret
                .strip_prefix(SECRET_PREFIX)
                .and_then(|encoded| STANDARD.decode(encoded).ok());
            let Some(key) = key else {
                tracing::error!("a webhook secret is not whsec_<base64>; it does not sign");
                return None;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(signed.as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
