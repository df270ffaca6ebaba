//! `keyhold serve admin …`: what an operator does to one account, each
//! action recorded where it cannot be hidden. A disclosure writes out
//! everything the server holds for the account — exactly what a compelled
//! operator could hand over, all of it ciphertext, ids and counts — and
//! appends a signed entry to the public disclosure log (`GET /disclosures`)
//! and an event to the account's own log, which its devices show. A quota
//! change is an account event too.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use keyhold_proto::{AccountId, DISCLOSURE_CONTEXT, Disclosure};

use crate::config::Config;
use crate::regions::{Region, Regions};
use crate::serve::ServeError;

/// What a disclosure handed over.
#[derive(Debug, serde::Serialize)]
pub struct Disclosed {
    /// The region that held the account.
    pub region: String,
    /// Rows written, all tables.
    pub rows: u64,
    /// Packs (and link objects) written.
    pub packs: u64,
    /// Bytes written (rows as JSON, and packs).
    pub bytes: u64,
    /// The disclosure log entry.
    pub entry: Disclosure,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |e| ServeError::Setup(format!("{}: {e}", path.display()))
}

/// Opens the stores and finds the region holding the account `text` names.
async fn locate(config: &Config, text: &str) -> Result<(Regions, Arc<Region>, AccountId), ServeError> {
    let account =
        AccountId::from_hex(text).ok_or_else(|| ServeError::Setup(format!("{text:?} is not an account id (32 hex digits)")))?;
    let regions = Regions::open(config).await?;
    let region = regions.of_account(account).await?.ok_or_else(|| ServeError::Setup(format!("no account {account} here")))?;
    Ok((regions, region, account))
}

/// Writes everything stored for `account` to `out` (which must not exist
/// or be empty), then logs it: the account's event log and the public,
/// signed disclosure log.
pub async fn disclose(config: &Config, account: &str, out: &Path, legal_basis: &str) -> Result<Disclosed, ServeError> {
    if legal_basis.trim().is_empty() {
        return Err(ServeError::Setup("state the legal basis (--legal-basis): it goes into the public log".into()));
    }
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(ServeError::Setup(format!("{} is not empty; name a new folder", out.display())));
    }
    let (regions, region, account) = locate(config, account).await?;
    std::fs::create_dir_all(out.join("packs")).map_err(io(out))?;
    let (mut rows, mut packs, mut bytes) = (0u64, 0u64, 0u64);
    let mut pack_ids = Vec::new();
    for (table, table_rows) in region.meta.export_account(account).await? {
        if table == "packs" {
            pack_ids.extend(table_rows.iter().filter_map(|r| r.get("pack_id")?.as_str().map(str::to_owned)));
        }
        // Link objects live in the blob store beside packs (links.rs).
        if table == "links" {
            pack_ids.extend(table_rows.iter().filter_map(|r| r.get("object_id")?.as_str().map(str::to_owned)));
        }
        rows += u64::try_from(table_rows.len()).unwrap_or(u64::MAX);
        let json = serde_json::to_vec_pretty(&table_rows).map_err(|e| ServeError::Setup(e.to_string()))?;
        bytes += u64::try_from(json.len()).unwrap_or(u64::MAX);
        let file = out.join(format!("{table}.json"));
        std::fs::write(&file, json).map_err(io(&file))?;
    }
    for id in pack_ids {
        let pack = keyhold_proto::ObjectId::from_hex(&id).ok_or_else(|| ServeError::Setup(format!("stored pack id {id}")))?;
        let data = region.blobs.get(account, pack, None).await?;
        bytes += u64::try_from(data.len()).unwrap_or(u64::MAX);
        packs += 1;
        let file = out.join("packs").join(&id);
        std::fs::write(&file, &data).map_err(io(&file))?;
    }
    let objects = rows + packs;
    let detail = format!("disclosed: {objects} objects ({bytes} bytes); legal basis stated: {legal_basis}");
    region.meta.add_account_event(account, "disclose", &detail, i64::try_from(now()).unwrap_or(i64::MAX)).await?;
    let named = config.disclosure_log_names_accounts.then(|| account.to_hex());
    let entry = append_log(&regions, named, legal_basis, objects, bytes).await?;
    let summary = Disclosed { region: region.name.clone(), rows, packs, bytes, entry };
    let manifest = serde_json::to_vec_pretty(&summary).map_err(|e| ServeError::Setup(e.to_string()))?;
    std::fs::write(out.join("manifest.json"), manifest).map_err(io(out))?;
    Ok(summary)
}

/// Appends a signed, hash-linked entry to the disclosure log (kept in the
/// default region's database).
async fn append_log(
    regions: &Regions,
    account: Option<String>,
    legal_basis: &str,
    objects: u64,
    bytes: u64,
) -> Result<Disclosure, ServeError> {
    let meta = &regions.default_region().meta;
    loop {
        let log = meta.disclosures().await?;
        let (seq, prev) = match log.last() {
            Some((seq, body, signature)) => (seq + 1, blake3::hash(&[body.as_slice(), signature].concat()).to_hex().to_string()),
            None => (0, "0".repeat(64)),
        };
        let entry = Disclosure {
            seq,
            prev,
            at: now(),
            account: account.clone(),
            accounts: 1,
            legal_basis: legal_basis.to_owned(),
            objects,
            bytes,
        };
        let body = serde_json::to_vec(&entry).map_err(|e| ServeError::Setup(e.to_string()))?;
        let signature = regions.sign(&[DISCLOSURE_CONTEXT, &body].concat());
        if meta.append_disclosure(seq, &body, &signature, i64::try_from(entry.at).unwrap_or(i64::MAX)).await? {
            return Ok(entry);
        }
    }
}

/// Sets an account's quota and records it in the account's event log.
pub async fn set_quota(config: &Config, account: &str, bytes: u64) -> Result<String, ServeError> {
    let (_, region, account) = locate(config, account).await?;
    region.meta.set_quota(account, bytes).await?;
    let at = i64::try_from(now()).unwrap_or(i64::MAX);
    region.meta.add_account_event(account, "quota", &format!("quota set to {bytes} bytes"), at).await?;
    Ok(region.name.clone())
}

/// Suspends (`reason: Some`) or reinstates (`None`) an account; recorded in
/// its event log.
pub async fn suspend(config: &Config, account: &str, reason: Option<&str>) -> Result<String, ServeError> {
    let (_, region, account) = locate(config, account).await?;
    let at = i64::try_from(now()).unwrap_or(i64::MAX);
    region.meta.set_suspended(account, reason.map(|_| at)).await?;
    let (kind, detail) = match reason {
        Some(why) => ("suspend", format!("account suspended: it can be read, not changed; reason stated: {why}")),
        None => ("reinstate", "account reinstated: it can be changed again".to_owned()),
    };
    region.meta.add_account_event(account, kind, &detail, at).await?;
    Ok(region.name.clone())
}

/// Deletes an account's data (packs, revisions, folders' keys, its handle)
/// and records it in the account's event log; its devices can still sign
/// in to read why. Returns the region and the number of packs removed.
pub async fn delete(config: &Config, account: &str, reason: &str) -> Result<(String, usize), ServeError> {
    if reason.trim().is_empty() {
        return Err(ServeError::Setup("state the reason (--reason): the account's devices are told".into()));
    }
    let (_, region, account) = locate(config, account).await?;
    let at = i64::try_from(now()).unwrap_or(i64::MAX);
    // The event first: a deletion no device is told of must not happen.
    region.meta.add_account_event(account, "delete", &format!("account data deleted; reason stated: {reason}"), at).await?;
    let packs = region.meta.delete_account_data(account, at).await?;
    for pack in &packs {
        region.blobs.delete(account, *pack).await?;
    }
    // Its link objects too (links_store.rs); the links then answer 410.
    for object in region.meta.delete_account_links(account).await? {
        region.blobs.delete(account, object).await?;
    }
    Ok((region.name.clone(), packs.len()))
}
