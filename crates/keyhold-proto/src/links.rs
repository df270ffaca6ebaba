//! Link shares (spec: `docs/spec/links.md`, "HTTP"). A link object travels
//! as a raw `application/octet-stream` body; the server learns its
//! cleartext header, its length and the expiry it is told, never its key.

use serde::{Deserialize, Serialize};

/// `POST /v1/links?expires_at=…`: the Unix time (seconds) after which the
/// server answers `410 Gone` for the link. The object's encrypted metadata
/// holds the same expiry, which every opener checks itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CreateLinkQuery {
    /// Unix seconds.
    pub expires_at: i64,
}

/// The answer to `POST /v1/links`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkCreated {
    /// The link id (32 hex digits), as in the object's header.
    pub link_id: String,
}

/// One of the account's links, as the server knows it: no name, no key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// The link id (32 hex digits).
    pub link_id: String,
    /// Stored length of the object, bytes (0 once it was deleted).
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// `GET /v1/links`: the account's links, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Links {
    /// The links.
    pub links: Vec<LinkRecord>,
}
