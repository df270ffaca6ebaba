//! What a deployment states, signed with its key: where it keeps data
//! (`keyhold residency`: checked and pinned) and what it was compelled to
//! disclose (`keyhold disclosures`: checked against the same key). The first statement seen is pinned (with the
//! key that signed it) in `residency.json` in the device's home; a later
//! statement signed by another key, or naming other regions or other stores
//! for them, is reported plainly so the user can ask why.

use keyhold_proto::{DISCLOSURE_CONTEXT, Disclosure, RESIDENCY_CONTEXT, ResidencyStatement};
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::home::{Home, write_private};

/// A verified statement and how it differs from the pinned one.
#[derive(Debug, Serialize)]
pub struct Checked {
    /// The statement.
    pub statement: ResidencyStatement,
    /// The deployment key that signed it (hex).
    pub public_key: String,
    /// No statement was pinned before: this one is now.
    pub first_seen: bool,
    /// What changed since the pinned statement, one line each.
    pub changes: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Pinned {
    public_key: String,
    statement: ResidencyStatement,
}

fn verify(key: &[u8; 32], context: &[u8], message: &[u8], signature: &keyhold_proto::Bytes) -> Result<()> {
    let signature: [u8; 64] = signature.array().ok_or_else(|| ClientError::Protocol("a signature is not 64 bytes".into()))?;
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|_| ClientError::Integrity(keyhold_core::Error::Malformed("deployment key")))?
        .verify_strict(&[context, message].concat(), &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| ClientError::Integrity(keyhold_core::Error::BadSignature))
}

/// Fetches the disclosure log and verifies it entry by entry: each signed by
/// the deployment key (the one this device pinned with the residency
/// statement, when it has one), numbered from 0 and linked to the one
/// before. Returns the entries, oldest first.
pub async fn disclosures(home: &Home, server: &str) -> Result<Vec<Disclosure>> {
    let log = Api::new(server)?.disclosures().await?;
    let key: [u8; 32] = log.public_key.array().ok_or_else(|| ClientError::Protocol("log key is not 32 bytes".into()))?;
    let pinned: Option<Pinned> =
        std::fs::read(home.dir().join("residency.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(p) = pinned.filter(|p| p.public_key != hex(&key)) {
        return Err(ClientError::Usage(format!(
            "the disclosure log is signed by {}, not by the deployment key this device pinned ({}); run `keyhold residency` to see why",
            hex(&key),
            p.public_key
        )));
    }
    let mut prev = "0".repeat(64);
    let mut out = Vec::new();
    for (i, signed) in log.entries.iter().enumerate() {
        verify(&key, DISCLOSURE_CONTEXT, &signed.body.0, &signed.signature)?;
        let entry: Disclosure = serde_json::from_slice(&signed.body.0)
            .map_err(|e| ClientError::Protocol(format!("malformed disclosure log entry: {e}")))?;
        if u64::try_from(i).ok() != Some(entry.seq) || entry.prev != prev {
            return Err(ClientError::Integrity(keyhold_core::Error::Malformed(
                "disclosure log entries out of order or unlinked",
            )));
        }
        prev = blake3::hash(&[signed.body.0.as_slice(), &signed.signature.0].concat()).to_hex().to_string();
        out.push(entry);
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Fetches, verifies and pins the server's residency statement.
pub async fn check(home: &Home, server: &str) -> Result<Checked> {
    let served = Api::new(server)?.residency().await?;
    let key: [u8; 32] = served.public_key.array().ok_or_else(|| ClientError::Protocol("residency key is not 32 bytes".into()))?;
    let signature: [u8; 64] =
        served.signature.array().ok_or_else(|| ClientError::Protocol("residency signature is not 64 bytes".into()))?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| ClientError::Integrity(keyhold_core::Error::Malformed("residency key")))?;
    verifying
        .verify_strict(&[RESIDENCY_CONTEXT, &served.statement.0].concat(), &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| ClientError::Integrity(keyhold_core::Error::BadSignature))?;
    let statement: ResidencyStatement = serde_json::from_slice(&served.statement.0)
        .map_err(|e| ClientError::Protocol(format!("malformed residency statement: {e}")))?;
    let public_key = hex(&key);
    let path = home.dir().join("residency.json");
    let pinned: Option<Pinned> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ClientError::io(&path)(e)),
    };
    let changes = pinned.as_ref().map(|p| differences(p, &public_key, &statement)).unwrap_or_default();
    std::fs::create_dir_all(home.dir()).map_err(ClientError::io(home.dir()))?;
    let json = serde_json::to_vec_pretty(&Pinned { public_key: public_key.clone(), statement: statement.clone() })
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    write_private(&path, &json)?;
    Ok(Checked { statement, public_key, first_seen: pinned.is_none(), changes })
}

fn differences(pinned: &Pinned, key: &str, now: &ResidencyStatement) -> Vec<String> {
    let mut out = Vec::new();
    if pinned.public_key != key {
        out.push(format!(
            "the statement is signed by another deployment key ({} before, {key} now): the operator replaced its key, or this is another server",
            pinned.public_key
        ));
    }
    let was = &pinned.statement;
    if was.default_region != now.default_region {
        out.push(format!("default region: {} before, {} now", was.default_region, now.default_region));
    }
    for region in &was.regions {
        match now.regions.iter().find(|r| r.name == region.name) {
            None => out.push(format!("region {} is gone", region.name)),
            Some(r) if r != region => out.push(format!(
                "region {}: metadata {} → {}, packs {} → {}",
                region.name, region.metadata, r.metadata, region.blobs, r.blobs
            )),
            Some(_) => {}
        }
    }
    for region in now.regions.iter().filter(|r| !was.regions.iter().any(|w| w.name == r.name)) {
        out.push(format!("new region {}: metadata {}, packs {}", region.name, region.metadata, region.blobs));
    }
    out
}
