//! The account's devices: verifying the device chain against the one this
//! device pinned, telling the user what changed, pairing a new device over
//! the server's relay, and revoking a device with a key rotation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyhold_core::{
    AccountRootKey, ChainChange, ChainDevice, ChainEntry, ChainHead, CollectionKey, CollectionWrapContext, DeviceChain, DeviceId,
    DeviceSecret, JoinerHello, JoinerPake, KdfParams, PAKE_MESSAGE_LEN, PairingCode, PairingKeys, RecoveryKey, Signer, Welcome,
    inviter_respond, os_rng, root_commitment, wrap_collection_key, wrap_previous_root, wrap_to_device,
};
use keyhold_proto::{AppendChainEntry, Bytes as B64, WrapRecord};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::api::Api;
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::home::{DeviceConfig, DeviceKeys, Home, PinnedChain};

/// How long a pairing code stays valid.
pub const PAIRING_TIMEOUT: Duration = Duration::from_secs(600);
/// Attempts the inviter answers per code. Each answer lets the other side
/// test one guess of the code (a relay playing the joiner can check its
/// guess against the answer and then go quiet), so answers are counted,
/// not only failures.
const MAX_ATTEMPTS: usize = 10;
const POLL: Duration = Duration::from_millis(250);

/// The chain a client works with, and what did not verify.
pub struct Reconciled {
    /// The verified chain.
    pub chain: DeviceChain,
    /// Its stored entries.
    pub entries: Vec<Vec<u8>>,
    /// Alarms for the user: what the server showed that did not verify.
    pub alarms: Vec<String>,
}

/// Verifies the chain the server shows against the one this device pinned.
/// The server's chain must extend the pinned one; entries beyond it are
/// verified one by one. Anything else (a shorter chain, a different entry
/// at a pinned place, an entry that does not verify) raises an alarm, and
/// the client keeps the genuine chain: the pinned one plus every extension
/// entry that verified.
pub fn reconcile(account: keyhold_core::AccountId, pinned: Option<&PinnedChain>, served: Vec<Vec<u8>>) -> Result<Reconciled> {
    let pinned: Vec<Vec<u8>> = pinned.map(|p| p.entries.iter().map(|e| e.0.clone()).collect()).unwrap_or_default();
    if pinned.is_empty() {
        // A home from before device chains: trust the first chain seen.
        tracing::warn!("no pinned device chain on this device; pinning the server's");
        let chain = DeviceChain::verify(account, served.iter().map(Vec::as_slice))?;
        return Ok(Reconciled { chain, entries: served, alarms: Vec::new() });
    }
    let mut chain = DeviceChain::verify(account, pinned.iter().map(Vec::as_slice))
        .map_err(|e| ClientError::Usage(format!("this device's pinned device chain (chain.json) does not verify: {e}")))?;
    let mut alarms = Vec::new();
    let pinned_len = pinned.len();
    if served.len() < pinned_len {
        let e = keyhold_core::Error::ChainRollback {
            pinned: u64::try_from(pinned_len).unwrap_or(u64::MAX),
            served: u64::try_from(served.len()).unwrap_or(u64::MAX),
        };
        alarms.push(format!("{e}; the server hides device changes this device has seen"));
    }
    let mut entries = pinned;
    if let Some(seq) = entries.iter().zip(&served).position(|(a, b)| a != b) {
        let e = keyhold_core::Error::ChainFork { seq: u64::try_from(seq).unwrap_or(u64::MAX) };
        alarms.push(format!("{e}; the server rewrote the account's device history"));
        return Ok(Reconciled { chain, entries, alarms });
    }
    for stored in served.into_iter().skip(pinned_len) {
        let seq = chain.head().seq.saturating_add(1);
        match chain.append(&stored) {
            Ok(_) => entries.push(stored),
            Err(e) => {
                alarms.push(format!(
                    "the server shows device chain entry {seq} that no enrolled device signed or that does not fit ({e}); \
                     no key will be given to the device it names"
                ));
                break;
            }
        }
    }
    Ok(Reconciled { chain, entries, alarms })
}

/// A time in ms since the Unix epoch, as RFC 3339 (UTC, seconds).
pub fn format_ms(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Now, in ms since the Unix epoch (the time a chain entry claims).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A short, comparable fingerprint of a device's keys (its id in groups).
pub fn fingerprint(id: &DeviceId) -> String {
    let hex = id.to_hex();
    hex.as_bytes().chunks(4).take(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

fn signer_name(chain: &DeviceChain, signer: Signer) -> String {
    match signer {
        Signer::RecoveryKey => "the recovery key".to_owned(),
        Signer::Device(id) => chain.device(&id).map_or_else(|| id.to_hex(), |d| format!("\"{}\"", d.name)),
    }
}

/// "revoked on … by …".
pub fn describe_revocation(chain: &DeviceChain, device: &ChainDevice) -> String {
    match &device.revoked {
        None => "enrolled".to_owned(),
        Some(r) => format!("revoked on {} by {}", format_ms(r.time_ms), signer_name(chain, r.by)),
    }
}

/// One line per chain entry after `seen` that another device or the
/// recovery key made.
pub fn notices(chain: &DeviceChain, entries: &[Vec<u8>], seen: u64, me: DeviceId) -> Vec<String> {
    let mut out = Vec::new();
    for stored in entries.iter().skip(usize::try_from(seen).unwrap_or(usize::MAX).saturating_add(1)) {
        let Ok((entry, _)) = ChainEntry::parse(stored) else { continue };
        if entry.signer == Signer::Device(me) {
            continue;
        }
        let by = signer_name(chain, entry.signer);
        let when = format_ms(entry.time_ms);
        out.push(match &entry.change {
            ChainChange::Create { .. } => continue,
            ChainChange::AddDevice { device, name } => {
                format!("device \"{name}\" ({}) was added on {when} by {by}", fingerprint(&device.id()))
            }
            ChainChange::RevokeDevice { device, .. } => {
                let name = chain.device(device).map_or_else(|| device.to_hex(), |d| d.name.clone());
                format!("device \"{name}\" was revoked on {when} by {by}; account keys were rotated")
            }
            ChainChange::RotateRecovery { .. } => format!("the recovery key was replaced on {when} by {by}"),
        });
    }
    out
}

/// `added_by` of the account's first device.
pub const CREATED_ACCOUNT: &str = "created the account";

/// One line of `keyhold devices`.
#[derive(Debug, Serialize)]
pub struct DeviceInfo {
    /// Name.
    pub name: String,
    /// Id (hex).
    pub id: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// When it was added (RFC 3339).
    pub added: String,
    /// By whom.
    pub added_by: String,
    /// Revocation, if any.
    pub revoked: Option<String>,
    /// Whether it is this device.
    pub this_device: bool,
}

/// Lists the account's devices from the verified chain.
pub fn list(client: &Client) -> Vec<DeviceInfo> {
    let me = client.keys.device.id();
    // In the order the chain enrolled them.
    let mut devices: Vec<_> = client.chain.devices().iter().collect();
    devices.sort_by_key(|(_, d)| d.added_seq);
    devices
        .into_iter()
        .map(|(id, d)| DeviceInfo {
            name: d.name.clone(),
            id: id.to_hex(),
            fingerprint: fingerprint(id),
            added: format_ms(d.added_ms),
            added_by: if d.added_seq == 0 { CREATED_ACCOUNT.to_owned() } else { signer_name(&client.chain, d.added_by) },
            revoked: d.revoked.as_ref().map(|_| describe_revocation(&client.chain, d)),
            this_device: *id == me,
        })
        .collect()
}

/// Finds an enrolled device by name or id (or an unambiguous id prefix).
pub fn find_device(chain: &DeviceChain, needle: &str) -> Result<DeviceId> {
    let needle_lower = needle.to_lowercase().replace(' ', "");
    let matches: Vec<DeviceId> = chain
        .active_devices()
        .filter(|d| d.name == needle || (needle_lower.len() >= 4 && d.public.id().to_hex().starts_with(&needle_lower)))
        .map(|d| d.public.id())
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ClientError::Usage(format!("no enrolled device is named or has the id {needle:?}; see `keyhold devices`"))),
        _ => Err(ClientError::Usage(format!("{needle:?} matches several devices; use the device id"))),
    }
}

impl Client {
    /// Re-reads the chain from the server and re-verifies it against the pin.
    pub async fn refresh_chain(&mut self) -> Result<()> {
        let served = self.api.chain().await?;
        let pinned = self.home_chain()?;
        let reconciled = reconcile(self.keys.account, Some(&pinned), served)?;
        self.alarms.extend(reconciled.alarms);
        self.chain = reconciled.chain;
        self.pin(reconciled.entries)?;
        Ok(())
    }

    fn home_chain(&self) -> Result<PinnedChain> {
        self.home().load_chain()?.ok_or_else(|| ClientError::Usage("this device has no pinned device chain".into()))
    }

    fn pin(&self, entries: Vec<Vec<u8>>) -> Result<()> {
        self.home().save_chain(&PinnedChain { entries: entries.into_iter().map(B64).collect(), seen: self.chain.head().seq })
    }

    /// Refuses key-changing actions while the server shows a chain that does not verify.
    fn require_no_alarm(&self) -> Result<()> {
        if self.alarms.is_empty() {
            Ok(())
        } else {
            Err(ClientError::Usage(
                "the server showed a device chain that does not verify (see the alarm above); \
                 no device can be added or revoked until that is resolved"
                    .into(),
            ))
        }
    }

    fn next_entry(&self, change: ChainChange) -> ChainEntry {
        let epoch = self.chain.epoch();
        ChainEntry {
            account: self.keys.account,
            seq: self.chain.head().seq.saturating_add(1),
            prev: self.chain.head().id,
            time_ms: now_ms(),
            account_epoch: if change.starts_epoch() { epoch.saturating_add(1) } else { epoch },
            signer: Signer::Device(self.keys.device.id()),
            change,
        }
    }

    /// Appends an entry made by this device and pins the result.
    async fn append(&mut self, stored: Vec<u8>, body: AppendChainEntry) -> Result<()> {
        let mut next = self.chain.clone();
        next.append(&stored)?;
        if !self.api.append_chain(&body).await? {
            return Err(ClientError::Usage("another device changed the account's devices at the same time; try again".into()));
        }
        let mut entries: Vec<Vec<u8>> = self.home_chain()?.entries.into_iter().map(|e| e.0).collect();
        entries.push(stored);
        self.chain = next;
        self.pin(entries)
    }

    /// Enrolls a device whose keys arrived through a verified pairing.
    async fn enroll(&mut self, hello: &JoinerHello) -> Result<ChainHead> {
        let entry = self.next_entry(ChainChange::AddDevice { device: hello.device.clone(), name: hello.name.clone() });
        let stored = entry.seal(&self.keys.device)?;
        let epoch = self.chain.epoch();
        let wrap = wrap_to_device(&self.keys.root, &hello.device, self.keys.account, epoch, &mut os_rng())?;
        let body = AppendChainEntry {
            entry: B64(stored.clone()),
            device_wraps: vec![WrapRecord { id: hello.device.id().to_hex(), epoch, wrap: B64(wrap) }],
            recovery_wrap: None,
            recovery_locator: None,
            previous_root_wrap: None,
            collection_wraps: Vec::new(),
        };
        self.append(stored, body).await?;
        Ok(self.chain.head())
    }

    /// Starts a new account key epoch: a new root key wrapped to every
    /// device that stays, the previous root wrapped under it, and every
    /// collection moved to a new key epoch (SECURITY A7).
    async fn rotate(
        &mut self,
        change: ChainChange,
        new_root: AccountRootKey,
        recovery_wrap: Vec<u8>,
        locator: Option<[u8; 32]>,
    ) -> Result<()> {
        let mut rng = os_rng();
        let account = self.keys.account;
        let entry = self.next_entry(change);
        let epoch = entry.account_epoch;
        let stored = entry.seal(&self.keys.device)?;
        let mut after = self.chain.clone();
        after.append(&stored)?;
        let mut device_wraps = Vec::new();
        for d in after.active_devices() {
            let wrap = wrap_to_device(&new_root, &d.public, account, epoch, &mut rng)?;
            device_wraps.push(WrapRecord { id: d.public.id().to_hex(), epoch, wrap: B64(wrap) });
        }
        let mut collection_wraps = Vec::new();
        // A shared collection's key epochs are the owner's to start, in its
        // member list, so every member can check them (sharing.md): the
        // owned ones get theirs after this entry, the joined ones none.
        let (owned, joined) = self.shared_collection_ids().await?;
        for (collection, newest) in self.collection_ids() {
            if owned.contains(&collection) || joined.contains(&collection) {
                continue;
            }
            let collection_epoch = newest.checked_add(1).ok_or(ClientError::Usage("collection key epoch overflow".into()))?;
            let key = CollectionKey::generate(&mut rng);
            let ctx = CollectionWrapContext { account, collection, collection_epoch, account_epoch: epoch };
            let wrap = wrap_collection_key(&key, &new_root, &ctx, &mut rng)?;
            collection_wraps.push(WrapRecord { id: collection.to_hex(), epoch: collection_epoch, wrap: B64(wrap) });
        }
        let body = AppendChainEntry {
            entry: B64(stored.clone()),
            device_wraps,
            recovery_wrap: Some(B64(recovery_wrap)),
            recovery_locator: locator.map(|l| B64(l.to_vec())),
            previous_root_wrap: Some(B64(wrap_previous_root(&self.keys.root, &new_root, account, epoch, &mut rng)?)),
            collection_wraps,
        };
        self.append(stored, body).await?;
        self.keys.root = new_root;
        self.keys.epoch = epoch;
        self.home().save(&self.config, &self.keys)?;
        self.load_account_keys().await?;
        // The owned shared collections' new epochs, sealed to their members'
        // devices (a failure here is retried when the collection is next
        // opened: its owner's revoked device counts as a reason to rotate).
        self.rotate_owned_shared(&owned).await
    }

    /// Revokes a device: it is dropped from the account at once (its
    /// sessions end), and everything written afterwards uses keys it never
    /// receives.
    pub async fn revoke(&mut self, needle: &str) -> Result<DeviceInfo> {
        self.refresh_chain().await?;
        self.require_no_alarm()?;
        self.verify_transparency(crate::transparency::Purpose::KeyChange).await?;
        let target = find_device(&self.chain, needle)?;
        if target == self.keys.device.id() {
            return Err(ClientError::Usage(
                "this is the device you are using; revoke it from another device (or after `keyhold recover` on a new one)"
                    .into(),
            ));
        }
        // The revoked device's writes count up to each collection's head as
        // verified now; anything it signs later is refused by every client.
        let mut cutoffs = BTreeMap::new();
        for collection in self.collection_ids().into_keys() {
            let head = match self.open_collection_by_id(collection).await {
                Ok(coll) => self.verified_head(&coll).await.map(|h| h.map(|r| r.revision.seq)),
                Err(e) => Err(e),
            };
            match head {
                Ok(Some(seq)) => {
                    cutoffs.insert(collection, seq);
                }
                Ok(None) => {}
                // A shared collection this account was removed from answers
                // no more: the last head this device verified bounds what
                // the revoked device can have written there.
                Err(e) if self.state.member_list_head(collection)?.is_some() => {
                    tracing::warn!(%collection, error = %e, "a shared collection no longer answers; its cutoff is this device's last verified head");
                    if let Some(seen) = self.state.verified_head(collection)? {
                        cutoffs.insert(collection, seen.seq);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let new_root = AccountRootKey::generate(&mut os_rng());
        let epoch = self.chain.epoch().saturating_add(1);
        let commitment = root_commitment(&new_root, self.keys.account, epoch);
        let recovery_wrap = wrap_to_device(&new_root, self.chain.recovery(), self.keys.account, epoch, &mut os_rng())?;
        let change = ChainChange::RevokeDevice { device: target, root_commitment: commitment, cutoffs };
        self.rotate(change, new_root, recovery_wrap, None).await?;
        list(self)
            .into_iter()
            .find(|d| d.id == target.to_hex())
            .ok_or_else(|| ClientError::Usage("revoked device vanished".into()))
    }

    /// Replaces the recovery key; the old one no longer opens anything new
    /// and can no longer sign devices in. Returns the new key's text.
    pub async fn rotate_recovery_key(&mut self) -> Result<Zeroizing<String>> {
        self.refresh_chain().await?;
        self.require_no_alarm()?;
        self.verify_transparency(crate::transparency::Purpose::KeyChange).await?;
        let recovery = RecoveryKey::generate(&mut os_rng());
        let new_root = AccountRootKey::generate(&mut os_rng());
        let epoch = self.chain.epoch().saturating_add(1);
        let commitment = root_commitment(&new_root, self.keys.account, epoch);
        let recovery_wrap = recovery.wrap(&new_root, self.keys.account, epoch, KdfParams::DEFAULT, &mut os_rng())?;
        let change = ChainChange::RotateRecovery { recovery: recovery.device().public().clone(), root_commitment: commitment };
        self.rotate(change, new_root, recovery_wrap, Some(recovery.locator())).await?;
        Ok(recovery.display()?)
    }
}

/// What the two screens show during pairing, and the answer of the user.
pub trait Ceremony {
    /// Shows the code to type on the new device.
    fn show_code(&mut self, code: &str);
    /// Shows the safety string; returns whether the user confirms that the
    /// other screen shows the same. `peer` says who is on the other side.
    fn confirm(&mut self, peer: &str, safety: &str) -> bool;
}

/// The inviter's side: opens a slot, answers attempts, and enrolls the
/// device whose attempt completes and whose safety string the user
/// confirms. Returns the new device's listing.
pub async fn add_device(client: &mut Client, ceremony: &mut dyn Ceremony) -> Result<DeviceInfo> {
    client.refresh_chain().await?;
    client.require_no_alarm()?;
    client.verify_transparency(crate::transparency::Purpose::KeyChange).await?;
    let mut code = PairingCode::generate(&mut os_rng());
    let mut opened = None;
    for _ in 0..8 {
        if let Some(slot) = client.api.open_pairing(code.slot()).await? {
            opened = Some(slot);
            break;
        }
        code = PairingCode::generate(&mut os_rng());
    }
    let slot_info = opened.ok_or_else(|| ClientError::Protocol("the server has no free pairing slot; try again".into()))?;
    let slot = code.slot().to_owned();
    ceremony.show_code(&code.display());
    let deadline = Instant::now() + Duration::from_secs(slot_info.expires_in.min(PAIRING_TIMEOUT.as_secs()));
    let result = serve_attempts(client, &code, &slot, deadline, ceremony).await;
    // On success the slot stays until it expires, so the new device can
    // read its welcome; no one answers there any more, so the code is spent.
    if result.is_err() {
        let _ = client.api.close_pairing(&slot).await;
    }
    result
}

async fn serve_attempts(
    client: &mut Client,
    code: &PairingCode,
    slot: &str,
    deadline: Instant,
    ceremony: &mut dyn Ceremony,
) -> Result<DeviceInfo> {
    let mut answered: BTreeMap<String, Option<PairingKeys>> = BTreeMap::new();
    while Instant::now() < deadline {
        for attempt in client.api.pairing_attempts(slot).await? {
            let id = attempt.attempt.clone();
            if !answered.contains_key(&id) {
                if answered.len() >= MAX_ATTEMPTS {
                    return Err(ClientError::Usage(format!(
                        "{MAX_ATTEMPTS} devices tried this code without completing; it is closed. \
                         Run `keyhold devices add` again for a new one"
                    )));
                }
                match inviter_respond(code, &attempt.hello.0, &mut os_rng()) {
                    Ok((keys, message)) => {
                        let mut reply = message.to_vec();
                        reply.extend_from_slice(&keys.inviter_confirmation());
                        client.api.pairing_step(slot, &id, "reply", reply).await?;
                        answered.insert(id.clone(), Some(keys));
                    }
                    Err(_) => {
                        answered.insert(id.clone(), None);
                    }
                }
            }
            let Some(joiner) = attempt.joiner else { continue };
            let Some(slot_keys) = answered.get_mut(&id) else { continue };
            let Some(keys) = slot_keys.take() else { continue };
            let hello =
                joiner.0.split_at_checked(keyhold_core::CONFIRMATION_LEN).ok_or(keyhold_core::Error::PairingFailed).and_then(
                    |(confirmation, sealed)| {
                        keys.check_joiner_confirmation(confirmation)?;
                        keys.open_joiner_hello(sealed)
                    },
                );
            let Ok(hello) = hello else {
                // A wrong code: one guess spent. The legitimate device can still come.
                continue;
            };
            if !ceremony.confirm(&format!("the new device \"{}\"", hello.name), keys.safety_string()) {
                return Err(ClientError::Usage("pairing cancelled: the safety strings were not confirmed".into()));
            }
            if client.chain.device(&hello.device.id()).is_some() {
                return Err(ClientError::Usage("that device is already in the account's device chain".into()));
            }
            let head = client.enroll(&hello).await?;
            let welcome = Welcome {
                account: client.keys.account,
                epoch: client.keys.epoch,
                root: AccountRootKey::from_bytes(*client.keys.root.expose_secret()),
                head,
            };
            client.api.pairing_step(slot, &id, "welcome", keys.seal_welcome(&welcome)?).await?;
            let new_id = hello.device.id().to_hex();
            return list(client)
                .into_iter()
                .find(|d| d.id == new_id)
                .ok_or_else(|| ClientError::Usage("enrolled device vanished".into()));
        }
        tokio::time::sleep(POLL).await;
    }
    Err(ClientError::Usage("the pairing code expired before a device joined; run `keyhold devices add` again".into()))
}

/// The new device's side: runs the exchange with the code the user typed,
/// shows the safety string, and on success sets this device up.
pub async fn join(home: &Home, server: &str, code_text: &str, name: &str, ceremony: &mut dyn Ceremony) -> Result<DeviceInfo> {
    if home.is_initialized() {
        return Err(ClientError::AlreadyInitialized(home.dir().to_owned()));
    }
    // A mistyped code, or a wrong one, is the user's input, not tampering.
    let code = PairingCode::parse(code_text).map_err(|e| ClientError::Usage(e.to_string()))?;
    let api = Api::new(server)?;
    let (pake, message) = JoinerPake::start(&code, &mut os_rng());
    let slot = code.slot();
    let attempt = api.start_pairing(slot, &message).await?.ok_or_else(|| {
        ClientError::Usage(
            "no device is waiting with this code: check the code, and that `keyhold devices add` is still running".into(),
        )
    })?;
    let reply = poll(&api, slot, &attempt, Duration::from_secs(120), |a| a.reply.clone()).await?;
    let (inviter_message, confirmation) =
        reply.0.split_at_checked(PAKE_MESSAGE_LEN).ok_or(ClientError::Integrity(keyhold_core::Error::PairingFailed))?;
    let keys = pake.finish(inviter_message, confirmation).map_err(|e| ClientError::Usage(e.to_string()))?;
    let device = DeviceSecret::generate(&mut os_rng());
    if !ceremony.confirm("the device that showed the code", keys.safety_string()) {
        return Err(ClientError::Usage("pairing cancelled: the safety strings were not confirmed".into()));
    }
    let hello = JoinerHello { device: device.public().clone(), name: name.to_owned() };
    let mut joiner = keys.joiner_confirmation().to_vec();
    joiner.extend_from_slice(&keys.seal_joiner_hello(&hello)?);
    api.pairing_step(slot, &attempt, "joiner", joiner).await?;
    let sealed = poll(&api, slot, &attempt, PAIRING_TIMEOUT, |a| a.welcome.clone()).await?;
    let welcome = keys.open_welcome(&sealed.0)?;
    // The welcome names the chain head that enrolls this device; the
    // server's chain must contain exactly it.
    let mut api = api;
    api.sign_in(welcome.account, &device).await?;
    let served = api.chain().await?;
    let upto = usize::try_from(welcome.head.seq).ok().and_then(|n| n.checked_add(1)).unwrap_or(usize::MAX);
    let pinned: Vec<Vec<u8>> = served.iter().take(upto).cloned().collect();
    let chain = DeviceChain::verify(welcome.account, pinned.iter().map(Vec::as_slice))?;
    if chain.head().seq < welcome.head.seq {
        return Err(ClientError::Integrity(keyhold_core::Error::ChainRollback {
            pinned: welcome.head.seq.saturating_add(1),
            served: chain.head().seq.saturating_add(1),
        }));
    }
    if chain.head() != welcome.head {
        return Err(ClientError::Integrity(keyhold_core::Error::ChainFork { seq: welcome.head.seq }));
    }
    let enrolled = chain.device(&device.id()).ok_or(keyhold_core::Error::UnknownAuthor)?;
    if enrolled.revoked.is_some() || chain.epoch() != welcome.epoch {
        return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("welcome does not match the device chain")));
    }
    chain.check_root_key(welcome.epoch, &welcome.root)?;
    let config = DeviceConfig {
        server: server.trim_end_matches('/').to_owned(),
        account_id: welcome.account.to_hex(),
        device_id: device.id().to_hex(),
        device_name: name.to_owned(),
    };
    let id = device.id();
    home.save_chain(&PinnedChain { entries: pinned.into_iter().map(B64).collect(), seen: chain.head().seq })?;
    home.save(&config, &DeviceKeys { account: welcome.account, epoch: welcome.epoch, root: welcome.root, device })?;
    let d = chain.device(&id).ok_or(keyhold_core::Error::UnknownAuthor)?;
    Ok(DeviceInfo {
        name: d.name.clone(),
        id: id.to_hex(),
        fingerprint: fingerprint(&id),
        added: format_ms(d.added_ms),
        added_by: signer_name(&chain, d.added_by),
        revoked: None,
        this_device: true,
    })
}

async fn poll(
    api: &Api,
    slot: &str,
    attempt: &str,
    timeout: Duration,
    pick: impl Fn(&keyhold_proto::PairingAttempt) -> Option<B64>,
) -> Result<B64> {
    let deadline = Instant::now() + timeout;
    loop {
        match api.pairing_attempt(slot, attempt).await {
            Ok(a) => {
                if let Some(v) = pick(&a) {
                    return Ok(v);
                }
            }
            Err(ClientError::Server { status: 404, .. }) => {
                return Err(ClientError::Usage(
                    "the other device closed the pairing (cancelled, expired or too many wrong codes); start again".into(),
                ));
            }
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Usage("the other device did not answer in time; start again".into()));
        }
        tokio::time::sleep(POLL).await;
    }
}
