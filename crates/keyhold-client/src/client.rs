//! A signed-in device: keys, server connection, local state, and the
//! verified reads every operation builds on (collection keys, history,
//! trees, blobs) plus the pack uploader.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use keyhold_core::pack::{PACK_PREFIX_LEN, PACK_TARGET_LEN, PACK_TRAILER_LEN, PackBuilder, PackEntry, open_index, open_trailer};
use keyhold_core::{
    AccountRootKey, BlobId, BlobRef, CollectionId, CollectionKey, CollectionKeys, CollectionWrapContext, DeviceChain, Entry,
    EntryKind, Head, HistoryVerifier, Listing, Manifest, ObjectId, ObjectType, Plaintext, SealedBlob, VerifiedRevision,
    collection_wrap_account_epoch, open_revision, os_rng, unwrap_collection_key, unwrap_on_device, unwrap_previous_root,
    wrap_collection_key,
};
use keyhold_proto::Bytes as B64;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::api::Api;
use crate::devices;
use crate::error::{ClientError, Result};
use crate::home::{DeviceConfig, DeviceKeys, Home, PinnedChain};
use crate::state::{BlobLocation, State};

/// The name of the collection `keyhold sync` uses unless told otherwise.
pub const DEFAULT_COLLECTION: &str = "default";

/// A signed-in device.
pub struct Client {
    /// Server connection (with a session).
    pub api: Api,
    /// Device config.
    pub config: DeviceConfig,
    /// Device secrets.
    pub keys: DeviceKeys,
    /// Local state.
    pub state: State,
    /// Whether the state database had to be rebuilt on open.
    pub state_rebuilt: bool,
    /// The verified device chain (pinned in the home folder).
    pub chain: DeviceChain,
    /// What the server showed that did not verify: shown to the user as
    /// alarms; the client keeps working with the genuine chain.
    pub alarms: Vec<String>,
    /// Device changes since this device last looked.
    pub notices: Vec<String>,
    /// This run's key transparency check (`None` without a pinned policy).
    pub transparency: Option<crate::transparency::Verification>,
    home: Home,
    roots: BTreeMap<u32, AccountRootKey>,
    collection_wraps: Vec<(CollectionId, u32, Vec<u8>)>,
}

/// One collection, its keys by epoch, and its blob index.
pub struct Collection {
    /// Id.
    pub id: CollectionId,
    /// Derived keys per epoch.
    pub keys: HashMap<u32, Arc<CollectionKeys>>,
    /// The epoch new data is written under.
    pub current_epoch: u32,
    /// Where each blob is.
    pub index: HashMap<BlobId, BlobLocation>,
    /// For a shared collection: its verified member list and the device
    /// chains of everyone who may write to it.
    pub shared: Option<Arc<crate::share::SharedView>>,
}

impl Collection {
    /// Keys of an epoch.
    pub fn keys_for(&self, epoch: u32) -> Result<&Arc<CollectionKeys>> {
        epoch_keys(&self.keys, epoch)
    }

    /// Keys new data is sealed under.
    pub fn current(&self) -> Result<&Arc<CollectionKeys>> {
        self.keys_for(self.current_epoch)
    }
}

fn epoch_keys(keys: &HashMap<u32, Arc<CollectionKeys>>, epoch: u32) -> Result<&Arc<CollectionKeys>> {
    keys.get(&epoch).ok_or(ClientError::Integrity(keyhold_core::Error::ContextMismatch("unknown collection key epoch")))
}

/// A file or folder of a remote tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    /// Folder or file.
    pub is_dir: bool,
    /// Size (files).
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Mode bits.
    pub mode: u32,
    /// Manifest or listing.
    pub target: BlobRef,
}

impl RemoteNode {
    fn of(entry: &Entry) -> Self {
        RemoteNode {
            is_dir: entry.kind == EntryKind::Folder,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            mode: entry.mode,
            target: entry.target,
        }
    }
}

/// A whole tree, by path (`a/b/c`).
pub type Tree = BTreeMap<String, RemoteNode>;

impl Client {
    /// Loads this device's keys, signs in, and verifies the account's device
    /// chain and keys.
    pub async fn open(home: &Home) -> Result<Self> {
        let (config, keys) = home.load()?;
        let mut api = Api::new(&config.server)?;
        match api.sign_in(keys.account, &keys.device).await {
            Err(ClientError::Server { status: 401, .. }) => {
                return Err(ClientError::Usage(
                    "the server refused this device's sign-in: it was revoked, or the server does not know this account".into(),
                ));
            }
            other => other?,
        }
        let (state, state_rebuilt) = State::open(&home.state_path())?;
        let state = state.with_pins(home.dir().join("heads.json"))?;
        let served = api.chain().await?;
        let pinned = home.load_chain()?;
        let reconciled = devices::reconcile(keys.account, pinned.as_ref(), served)?;
        let mut client = Client {
            api,
            config,
            keys,
            state,
            state_rebuilt,
            chain: reconciled.chain,
            alarms: reconciled.alarms,
            notices: Vec::new(),
            transparency: None,
            home: home.clone(),
            roots: BTreeMap::new(),
            collection_wraps: Vec::new(),
        };
        let me = client.keys.device.id();
        match client.chain.device(&me) {
            None => return Err(ClientError::Integrity(keyhold_core::Error::UnknownAuthor)),
            Some(d) if d.revoked.is_some() => {
                return Err(ClientError::Usage(format!(
                    "this device was revoked ({}); it can no longer read or write this account",
                    devices::describe_revocation(&client.chain, d)
                )));
            }
            Some(_) => {}
        }
        let seen = pinned.as_ref().map_or(client.chain.head().seq, |p| p.seen);
        client.notices = devices::notices(&client.chain, &reconciled.entries, seen, me);
        home.save_chain(&PinnedChain {
            entries: reconciled.entries.into_iter().map(B64).collect(),
            seen: client.chain.head().seq,
        })?;
        client.load_account_keys().await?;
        client.notices.extend(client.new_account_events().await?);
        client.transparency = client.verify_transparency(crate::transparency::Purpose::Read).await?;
        if let Some(report) = &client.transparency {
            client.notices.extend(report.warnings.iter().cloned());
        }
        Ok(client)
    }

    /// What the operator did to this account since this device last looked
    /// (a disclosure, a quota change), one notice each; remembered in
    /// `events.json` so each is told once per device.
    async fn new_account_events(&self) -> Result<Vec<String>> {
        let path = self.home.dir().join("events.json");
        let seen: Option<u64> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let events = self.api.events().await?.events;
        let fresh: Vec<String> = events
            .iter()
            .filter(|e| seen.is_none_or(|s| e.seq > s))
            .map(|e| {
                let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(e.at).unwrap_or(0));
                format!(
                    "the server's operator acted on this account ({}, {}): {}",
                    e.kind,
                    humantime::format_rfc3339_seconds(when),
                    e.detail
                )
            })
            .collect();
        if let Some(last) = events.last().map(|e| e.seq) {
            let json = serde_json::to_vec(&last).map_err(|e| ClientError::Usage(e.to_string()))?;
            crate::home::write_private(&path, &json)?;
        }
        Ok(fresh)
    }

    /// Fetches the wrapped keys and recovers the root key of every account
    /// epoch, each checked against the chain's commitment (SECURITY A1).
    pub(crate) async fn load_account_keys(&mut self) -> Result<()> {
        let keys = self.api.keys().await?;
        let account = self.keys.account;
        let newest = self.chain.epoch();
        if self.keys.epoch > newest {
            return Err(ClientError::Integrity(keyhold_core::Error::ChainRollback {
                pinned: u64::from(self.keys.epoch),
                served: u64::from(newest),
            }));
        }
        self.chain.check_root_key(self.keys.epoch, &self.keys.root)?;
        if newest > self.keys.epoch {
            // A new epoch started on another device: our wrap of it.
            let me = self.keys.device.id().to_hex();
            let wrap = keys.device_wraps.iter().find(|w| w.id == me && w.epoch == newest).ok_or_else(|| {
                ClientError::Withheld(format!("this device's key of account epoch {newest}, which the device chain started"))
            })?;
            let root = unwrap_on_device(&wrap.wrap.0, &self.keys.device, account, newest)?;
            self.chain.check_root_key(newest, &root)?;
            self.keys.root = root;
            self.keys.epoch = newest;
            self.home.save(&self.config, &self.keys)?;
        }
        let mut roots = BTreeMap::new();
        roots.insert(self.keys.epoch, AccountRootKey::from_bytes(*self.keys.root.expose_secret()));
        let mut epoch = self.keys.epoch;
        while epoch > 0 {
            let Some(current) = roots.get(&epoch) else { break };
            let Some(wrap) = keys.previous_root_wraps.iter().find(|w| w.epoch == epoch) else {
                tracing::warn!(epoch, "the server has no wrap of the previous root key; older data may be unreadable");
                break;
            };
            let previous = unwrap_previous_root(&wrap.wrap.0, current, account, epoch)?;
            epoch -= 1;
            self.chain.check_root_key(epoch, &previous)?;
            roots.insert(epoch, previous);
        }
        self.roots = roots;
        self.collection_wraps =
            keys.collection_wraps.into_iter().filter_map(|w| Some((CollectionId::from_hex(&w.id)?, w.epoch, w.wrap.0))).collect();
        Ok(())
    }

    fn root(&self) -> &AccountRootKey {
        &self.keys.root
    }

    /// This device's home folder.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The root key of an account epoch, if this device holds it.
    pub(crate) fn root_of(&self, epoch: u32) -> Result<&AccountRootKey> {
        self.roots.get(&epoch).ok_or(ClientError::Integrity(keyhold_core::Error::ContextMismatch("unknown account key epoch")))
    }

    /// The root key of epoch 0, from which collection names map to ids (so
    /// a collection keeps its id across key rotations).
    fn first_root(&self) -> Result<&AccountRootKey> {
        self.root_of(0)
    }

    /// Every key epoch of a collection, each wrap opened with the root key
    /// of the account epoch it names (authenticated by the opening).
    pub(crate) fn collection_keys(&self, id: CollectionId) -> Result<HashMap<u32, Arc<CollectionKeys>>> {
        Ok(self
            .collection_raw_keys(id)?
            .into_iter()
            .map(|(epoch, key)| (epoch, Arc::new(CollectionKeys::derive(&key, id, epoch))))
            .collect())
    }

    /// The collection keys themselves, by epoch.
    pub(crate) fn collection_raw_keys(&self, id: CollectionId) -> Result<BTreeMap<u32, CollectionKey>> {
        let mut keys = BTreeMap::new();
        for (cid, epoch, wrap) in self.collection_wraps.iter().filter(|(c, _, _)| *c == id) {
            let account_epoch = collection_wrap_account_epoch(wrap).ok_or(keyhold_core::Error::Truncated)?;
            let ctx =
                CollectionWrapContext { account: self.keys.account, collection: *cid, collection_epoch: *epoch, account_epoch };
            keys.insert(*epoch, unwrap_collection_key(wrap, self.root_of(account_epoch)?, &ctx)?);
        }
        Ok(keys)
    }

    /// The key epochs of a collection this account has filed, ascending.
    pub(crate) fn collection_raw_epochs(&self, id: CollectionId) -> Vec<u32> {
        let mut epochs: Vec<u32> = self.collection_wraps.iter().filter(|(c, _, _)| *c == id).map(|(_, e, _)| *e).collect();
        epochs.sort_unstable();
        epochs.dedup();
        epochs
    }

    /// The root key of the current account epoch.
    pub(crate) fn current_root(&self) -> &AccountRootKey {
        self.root()
    }

    /// Remembers a collection key wrap this device just filed.
    pub(crate) fn add_collection_wrap(&mut self, id: CollectionId, epoch: u32, wrap: Vec<u8>) {
        self.collection_wraps.push((id, epoch, wrap));
    }

    /// Opens an existing collection by id, with its member list if shared.
    pub async fn open_collection_by_id(&self, id: CollectionId) -> Result<Collection> {
        let mut coll = self.collection_by_id(id)?;
        let owner = self.joined_collections().await?.into_iter().find(|(c, _)| *c == id).map_or(self.keys.account, |(_, o)| o);
        if let Some(view) = self.shared_view(id, owner).await? {
            coll.current_epoch = view.list.key_epoch();
            coll.shared = Some(Arc::new(view));
        }
        Ok(coll)
    }

    /// Opens an existing collection by id.
    pub fn collection_by_id(&self, id: CollectionId) -> Result<Collection> {
        let keys = self.collection_keys(id)?;
        let current_epoch = keys.keys().copied().max().ok_or_else(|| ClientError::Usage("no such collection".into()))?;
        let index = self.state.blob_index(id)?;
        Ok(Collection { id, keys, current_epoch, index, shared: None })
    }

    /// Collections that have a key filed, with their newest key epoch.
    pub fn collection_ids(&self) -> BTreeMap<CollectionId, u32> {
        let mut out = BTreeMap::new();
        for (id, epoch, _) in &self.collection_wraps {
            let e = out.entry(*id).or_insert(*epoch);
            *e = (*e).max(*epoch);
        }
        out
    }

    /// Opens (creating on first use) the collection named `name`, or the
    /// shared collection named `NAME@OWNER` this account joined.
    pub async fn collection(&mut self, name: &str) -> Result<Collection> {
        if let Some((_, owner)) = name.rsplit_once('@') {
            if let Some(joined) = self.joined_collection(name).await? {
                return Ok(joined);
            }
            // NAME@OWNER names someone else's collection: never create one.
            if keyhold_core::AccountId::from_hex(owner).is_some_and(|o| o != self.keys.account) {
                return Err(ClientError::Usage(format!(
                    "no shared collection {name} has been accepted on this account (see `keyhold invitations`)"
                )));
            }
        }
        let mut coll = self.collection_attempt(name, 0).await?;
        let me = self.keys.account;
        if let Some(mut view) = self.shared_view(coll.id, me).await? {
            // A device of a member (or of this account) was revoked since the
            // key epoch began: new data goes under a key it never held (A7).
            if self.member_device_revoked_since_epoch(&view) {
                // A list that moved meanwhile is read again just below; the
                // next open tries again if the revocation still calls for it.
                let _started = self.start_shared_epoch(&coll, &view, None).await?;
                view = self.shared_view(coll.id, me).await?.ok_or_else(|| ClientError::Withheld("the member list".into()))?;
                coll = self.collection_by_id(coll.id)?;
            }
            // Only keys the list committed to are used: a key of an epoch a
            // failed rotation filed but never committed stays unused.
            for (epoch, key) in &self.collection_raw_keys(coll.id)? {
                if *epoch <= view.list.key_epoch() {
                    view.list.check_key(*epoch, key)?;
                }
            }
            coll.current_epoch = view.list.key_epoch();
            coll.shared = Some(Arc::new(view));
        }
        Ok(coll)
    }

    async fn collection_attempt(&mut self, name: &str, attempt: u32) -> Result<Collection> {
        let id = CollectionId::named(self.first_root()?, name);
        let mut keys = self.collection_keys(id)?;
        if keys.is_empty() {
            let key = CollectionKey::generate(&mut os_rng());
            let ctx = CollectionWrapContext {
                account: self.keys.account,
                collection: id,
                collection_epoch: 0,
                account_epoch: self.keys.epoch,
            };
            let wrap = wrap_collection_key(&key, self.root(), &ctx, &mut os_rng())?;
            if !self.api.put_collection_key(id, 0, wrap.clone()).await? {
                // Another device created it first: use theirs (a server that
                // claims so but never shows it is refused after a few tries).
                if attempt >= 3 {
                    return Err(ClientError::Withheld(format!(
                        "the key of collection {name}: it refuses a new one but shows none"
                    )));
                }
                self.load_account_keys().await?;
                return Box::pin(self.collection_attempt(name, attempt + 1)).await;
            }
            self.collection_wraps.push((id, 0, wrap));
            keys.insert(0, Arc::new(CollectionKeys::derive(&key, id, 0)));
        }
        let current_epoch = keys.keys().copied().max().unwrap_or(0);
        let index = self.state.blob_index(id)?;
        Ok(Collection { id, keys, current_epoch, index, shared: None })
    }

    /// Verifies the collection's history up to the server's head against the
    /// last head this device accepted (rollback, fork, injection).
    pub async fn verified_head(&self, coll: &Collection) -> Result<Option<VerifiedRevision>> {
        let last = self.state.verified_head(coll.id)?;
        let Some(offered) = self.api.head(coll.id).await? else {
            return match last {
                Some(seen) => Err(ClientError::Integrity(keyhold_core::Error::Rollback { seen: seen.seq, served: 0 })),
                None => Ok(None),
            };
        };
        let offered = Head { seq: offered.seq, id: offered.id.0 };
        let mut verifier = HistoryVerifier::new(coll.id, last);
        let fresh = verifier.check_offered(offered)?;
        let after = if fresh { last.map(|h| h.seq) } else { offered.seq.checked_sub(1) };
        let stored = self.api.revisions(coll.id, after).await?;
        let revisions = stored.iter().map(|s| self.open_revision(coll, s)).collect::<Result<Vec<_>>>()?;
        let Some(newest) = revisions.last().cloned() else {
            return Err(ClientError::Integrity(keyhold_core::Error::MissingRevisions { after }));
        };
        // Another device may have committed between the two requests: the
        // chain must contain the offered head, and may go beyond it.
        if !revisions.iter().any(|r| r.head() == offered) {
            return Err(ClientError::Integrity(keyhold_core::Error::Fork { seq: offered.seq }));
        }
        // Everything past the last accepted head must link to it, including
        // revisions beyond an unchanged offered head (a commit that raced
        // the two requests, or one the server slipped in).
        let beyond: Vec<VerifiedRevision> =
            revisions.into_iter().filter(|r| last.is_none_or(|l| r.revision.seq > l.seq)).collect();
        if !beyond.is_empty() {
            let head = verifier.extend(&beyond)?;
            self.state.set_verified_head(coll.id, head)?;
        }
        Ok(Some(newest))
    }

    /// Every revision from the first, verified as one chain that contains
    /// the last head this device accepted.
    pub async fn full_history(&self, coll: &Collection) -> Result<Vec<VerifiedRevision>> {
        self.verified_head(coll).await?;
        let stored = self.api.revisions(coll.id, None).await?;
        let revisions = stored.iter().map(|s| self.open_revision(coll, s)).collect::<Result<Vec<_>>>()?;
        let mut verifier = HistoryVerifier::new(coll.id, None);
        if !revisions.is_empty() {
            verifier.extend(&revisions)?;
        }
        if let Some(seen) = self.state.verified_head(coll.id)? {
            if revisions.get(usize::try_from(seen.seq).unwrap_or(usize::MAX)).map(VerifiedRevision::head) != Some(seen) {
                return Err(ClientError::Integrity(keyhold_core::Error::Fork { seq: seen.seq }));
            }
        }
        Ok(revisions)
    }

    pub(crate) fn open_revision(&self, coll: &Collection, stored: &[u8]) -> Result<VerifiedRevision> {
        let header = keyhold_core::RevisionHeader::parse(stored)?;
        let keys = coll.keys_for(header.epoch)?;
        if let Some(view) = &coll.shared {
            // A shared collection: any member that may write, through a
            // device of its proven chain (SECURITY D3, A7).
            let verified = open_revision(keys, stored, |id| view.device(id))?;
            if !view.may_author(&verified.revision.author, coll.id, verified.revision.seq) {
                return Err(ClientError::Integrity(keyhold_core::Error::UnknownAuthor));
            }
            return Ok(verified);
        }
        let verified = open_revision(keys, stored, |id| self.chain.device(id).map(|d| &d.public))?;
        // A revoked device's revisions count only up to the cutoff its
        // revocation recorded (SECURITY A7).
        if !self.chain.may_author(&verified.revision.author, coll.id, verified.revision.seq) {
            return Err(ClientError::Integrity(keyhold_core::Error::UnknownAuthor));
        }
        Ok(verified)
    }

    /// Loads the index of every pack the server lists that this device has
    /// not indexed yet (each index is authenticated by the pack key).
    pub async fn refresh_index(&self, coll: &mut Collection) -> Result<()> {
        match self.refresh_index_past_damage(coll).await?.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Like [`Client::refresh_index`], but a pack whose index cannot be read
    /// (not served, or not authentic) is skipped and returned with the
    /// reason, so that `check` can report it and go on. Transport and local
    /// failures still stop it.
    pub async fn refresh_index_past_damage(&self, coll: &mut Collection) -> Result<Vec<(ObjectId, ClientError)>> {
        /// Indexes read at once: each costs two round trips, so a new
        /// device with hundreds of packs would otherwise wait on latency.
        const IN_FLIGHT: usize = 8;
        /// Indexes recorded per SQLite transaction.
        const PER_TRANSACTION: usize = 64;
        let known = self.state.known_packs(coll.id)?;
        let listed = self.api.packs(coll.id).await?;
        // The reads borrow a copy of the keys; `coll` takes their results.
        let (collection, keys) = (coll.id, coll.keys.clone());
        let keys_for = |epoch: u32| epoch_keys(&keys, epoch).cloned();
        let mut reads = futures::stream::iter(listed.packs.into_iter().filter(|p| !known.contains(&p.id.0)))
            .map(|pack| {
                let (id, size) = (pack.id.0, pack.size);
                read_pack_index(&self.api, collection, id, size, &keys_for).map(move |read| (id, size, read))
            })
            .buffered(IN_FLIGHT);
        let mut damaged = Vec::new();
        let mut batch = Vec::new();
        while let Some((id, size, read)) = reads.next().await {
            match read {
                Ok(entries) => batch.push((id, size, entries)),
                Err(e @ (ClientError::Http(_) | ClientError::Io { .. } | ClientError::State(_))) => return Err(e),
                Err(e) => damaged.push((id, e)),
            }
            if batch.len() >= PER_TRANSACTION {
                self.record_packs(coll, std::mem::take(&mut batch))?;
            }
        }
        self.record_packs(coll, batch)?;
        Ok(damaged)
    }

    /// Saves verified pack indexes and adds their blobs to `coll`'s index.
    fn record_packs(&self, coll: &mut Collection, packs: Vec<(ObjectId, u64, Vec<PackEntry>)>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        self.state.add_packs(coll.id, packs.iter().map(|(id, size, entries)| (*id, *size, entries.as_slice())))?;
        for (id, _, entries) in &packs {
            for e in entries {
                coll.index
                    .insert(e.id, BlobLocation { kind: e.kind, pack: *id, offset: u64::from(e.offset), len: u64::from(e.len) });
            }
        }
        Ok(())
    }

    /// Where each of `ids` is stored, loading new pack indexes first if
    /// any is unknown.
    pub async fn locate(&self, coll: &mut Collection, ids: &[BlobId]) -> Result<Vec<(BlobId, BlobLocation)>> {
        if ids.iter().any(|id| !coll.index.contains_key(id)) {
            self.refresh_index(coll).await?;
        }
        ids.iter().map(|id| Ok((*id, *coll.index.get(id).ok_or_else(|| ClientError::MissingBlob(id.to_hex()))?))).collect()
    }

    /// Fetches the ciphertexts of `ids` (see [`fetch_located`]).
    pub async fn fetch_blobs(&self, coll: &mut Collection, ids: &[BlobId]) -> Result<HashMap<BlobId, Vec<u8>>> {
        let located = self.locate(coll, ids).await?;
        fetch_located(&self.api, coll.id, located).await
    }

    /// Reads and authenticates a whole tree (every listing; manifests are
    /// opened on demand).
    pub async fn read_tree(&self, coll: &mut Collection, root: BlobRef) -> Result<Tree> {
        let mut tree = Tree::new();
        let mut level: Vec<(String, BlobRef)> = vec![(String::new(), root)];
        while !level.is_empty() {
            let ids: Vec<BlobId> = level.iter().map(|(_, r)| r.id).collect();
            let mut blobs = self.fetch_blobs(coll, &ids).await?;
            let mut next = Vec::new();
            for (prefix, at) in level {
                let ciphertext = blobs.remove(&at.id).ok_or_else(|| ClientError::MissingBlob(at.id.to_hex()))?;
                let listing = coll.keys_for(at.epoch)?.open_listing(&at.id, ciphertext)?;
                for entry in listing.entries() {
                    let path = if prefix.is_empty() { entry.name.clone() } else { format!("{prefix}/{}", entry.name) };
                    if entry.kind == EntryKind::Folder {
                        next.push((path.clone(), entry.target));
                    }
                    tree.insert(path, RemoteNode::of(entry));
                }
            }
            level = next;
        }
        Ok(tree)
    }

    /// Opens manifests, checking each against the listing entry that named it.
    pub async fn manifests(&self, coll: &mut Collection, nodes: &[&RemoteNode]) -> Result<HashMap<BlobId, Manifest>> {
        let ids: Vec<BlobId> = nodes.iter().map(|n| n.target.id).collect();
        let mut blobs = self.fetch_blobs(coll, &ids).await?;
        let mut out = HashMap::new();
        for node in nodes {
            let Some(ciphertext) = blobs.remove(&node.target.id) else { continue };
            let manifest = coll.keys_for(node.target.epoch)?.open_manifest(&node.target.id, ciphertext)?;
            if manifest.size != node.size || manifest.meta.mode != node.mode || manifest.meta.mtime_ns != node.mtime_ns {
                return Err(ClientError::Integrity(keyhold_core::Error::Malformed("listing entry disagrees with its manifest")));
            }
            out.insert(node.target.id, manifest);
        }
        Ok(out)
    }

    /// Seals a tree's listings bottom-up (files must already have their
    /// manifests uploaded) and returns the root listing.
    pub fn seal_tree(&self, coll: &Collection, tree: &Tree, uploader: &mut Uploader) -> Result<BlobRef> {
        let keys = coll.current()?.clone();
        let mut children: BTreeMap<&str, Vec<(&str, &RemoteNode)>> = BTreeMap::new();
        for (path, node) in tree {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            children.entry(parent).or_default().push((name, node));
        }
        let mut sealed: HashMap<String, BlobRef> = HashMap::new();
        let mut dirs: Vec<&str> = tree.iter().filter(|(_, n)| n.is_dir).map(|(p, _)| p.as_str()).collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        dirs.push("");
        for dir in dirs {
            let mut entries = Vec::new();
            for (name, node) in children.get(dir).map(Vec::as_slice).unwrap_or_default() {
                let path = if dir.is_empty() { (*name).to_owned() } else { format!("{dir}/{name}") };
                let target = if node.is_dir {
                    *sealed.get(&path).ok_or_else(|| ClientError::Protocol("folder order".into()))?
                } else {
                    node.target
                };
                entries.push(Entry {
                    name: (*name).to_owned(),
                    kind: if node.is_dir { EntryKind::Folder } else { EntryKind::File },
                    mode: node.mode,
                    mtime_ns: node.mtime_ns,
                    size: if node.is_dir { 0 } else { node.size },
                    target,
                });
            }
            let blob = keys.seal_listing(&Listing::new(entries)?)?;
            let target = keys.blob_ref(&blob);
            uploader.push(blob)?;
            sealed.insert(dir.to_owned(), target);
        }
        sealed.remove("").ok_or_else(|| ClientError::Protocol("no root".into()))
    }
}

/// Blobs closer than this in one pack are fetched in one range request:
/// fewer round trips, and the server sees runs rather than single blobs.
const COALESCE_GAP: u64 = 1 << 20;
/// A run spans at most this many bytes of its pack (or one blob, if
/// longer): what a fetch holds in memory does not grow with pack size.
const MAX_RUN: u64 = 8 << 20;

/// A pack and the blobs of it fetched in one range request.
type Run = (ObjectId, Vec<(BlobId, BlobLocation)>);

/// Groups located blobs (each once) into runs: per pack, in order, blobs
/// less than [`COALESCE_GAP`] apart and spanning at most [`MAX_RUN`].
fn runs(located: Vec<(BlobId, BlobLocation)>) -> Vec<Run> {
    let mut by_pack: HashMap<ObjectId, Vec<(BlobId, BlobLocation)>> = HashMap::new();
    let mut seen = HashSet::new();
    for (id, loc) in located {
        if seen.insert(id) {
            by_pack.entry(loc.pack).or_default().push((id, loc));
        }
    }
    let mut runs: Vec<Run> = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort_by_key(|(_, loc)| loc.offset);
        let mut run: Vec<(BlobId, BlobLocation)> = Vec::new();
        for blob in blobs {
            let span =
                run.first().zip(run.last()).map(|((_, first), (_, last))| (first.offset, last.offset.saturating_add(last.len)));
            let blob_end = blob.1.offset.saturating_add(blob.1.len);
            if span.is_some_and(|(start, end)| {
                blob.1.offset > end.saturating_add(COALESCE_GAP) || blob_end.saturating_sub(start) > MAX_RUN
            }) {
                runs.push((pack, std::mem::take(&mut run)));
            }
            run.push(blob);
        }
        runs.push((pack, run));
    }
    runs
}

/// Fetches located blobs: per pack, runs of nearby blobs in one range
/// request each, a few requests at a time.
pub async fn fetch_located(
    api: &Api,
    collection: CollectionId,
    located: Vec<(BlobId, BlobLocation)>,
) -> Result<HashMap<BlobId, Vec<u8>>> {
    let runs = runs(located);
    let fetches = runs.into_iter().map(|(pack, run)| {
        let api = api.clone();
        async move {
            let (Some((_, first)), Some((_, last))) = (run.first(), run.last()) else { return Ok(Vec::new()) };
            let start = first.offset;
            let bytes = api.get_pack(collection, pack, Some(start..last.offset.saturating_add(last.len))).await?;
            run.into_iter()
                .map(|(id, loc)| {
                    let from = usize::try_from(loc.offset - start).unwrap_or(usize::MAX);
                    let to = from.saturating_add(usize::try_from(loc.len).unwrap_or(usize::MAX));
                    let slice = bytes.get(from..to).ok_or_else(|| ClientError::Protocol("blob outside its pack".into()))?;
                    Ok((id, slice.to_vec()))
                })
                .collect::<Result<Vec<_>>>()
        }
    });
    let mut out = HashMap::new();
    let mut done = futures::stream::iter(fetches).buffer_unordered(8);
    while let Some(blobs) = done.next().await {
        out.extend(blobs?);
    }
    Ok(out)
}

/// Packs new blobs and uploads full packs in the background (a few at a
/// time), skipping blobs the collection already stores. Blobs come either
/// through [`Uploader::push`] or, from encryption workers, as whole packs
/// built by a [`Packer`] of this uploader.
pub struct Uploader {
    api: Api,
    state: State,
    collection: CollectionId,
    packer: Packer,
    in_flight: JoinSet<Result<(ObjectId, u64, Vec<PackEntry>)>>,
    done: Vec<(ObjectId, u64, Vec<PackEntry>)>,
    bytes_queued: u64,
}

/// Reads a stored pack's index: its prefix, trailer and sealed index (three
/// range reads), each authenticated under the keys of the epoch the prefix
/// names.
async fn read_pack_index(
    api: &Api,
    collection: CollectionId,
    id: ObjectId,
    size: u64,
    keys_for: impl Fn(u32) -> Result<Arc<CollectionKeys>>,
) -> Result<Vec<PackEntry>> {
    if size < u64::try_from(PACK_PREFIX_LEN + PACK_TRAILER_LEN).unwrap_or(u64::MAX) {
        return Err(ClientError::Protocol(format!("pack {id} is too small to be a pack")));
    }
    // Prefix and trailer are asked for together: two round trips, not three.
    let (prefix, trailer) = futures::future::try_join(
        api.get_pack(collection, id, Some(0..u64::try_from(PACK_PREFIX_LEN).unwrap_or(0))),
        api.get_pack_tail(collection, id, size, u64::try_from(PACK_TRAILER_LEN).unwrap_or(0)),
    )
    .await?;
    let epoch = prefix.get(23..27).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).unwrap_or(u32::MAX);
    let keys = keys_for(epoch)?;
    let len = usize::try_from(size).map_err(|_| ClientError::Protocol("pack size".into()))?;
    let (offset, index_len) = open_trailer(&keys, &prefix, &trailer, len)?;
    let start = u64::try_from(offset).unwrap_or(0);
    let sealed = api.get_pack(collection, id, Some(start..start + u64::try_from(index_len).unwrap_or(0))).await?;
    Ok(open_index(&keys, &prefix, &sealed, offset)?)
}

/// What a pack's read-back must return (see [`verify_stored`]): its
/// prefix, and its sealed index with the trailer, as they were sent.
struct SentEnds {
    prefix: Vec<u8>,
    tail_start: u64,
    tail: Vec<u8>,
}

impl SentEnds {
    /// The ends of `pack`, whose blobs `entries` lists (they tile its body,
    /// so the index starts where the last one ends).
    fn of(pack: &[u8], entries: &[PackEntry]) -> Self {
        let at = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let tail_start = entries.last().map_or(PACK_PREFIX_LEN, |e| at(e.offset).saturating_add(at(e.len)));
        SentEnds {
            prefix: pack.get(..PACK_PREFIX_LEN).unwrap_or_default().to_vec(),
            tail_start: u64::try_from(tail_start).unwrap_or(u64::MAX),
            tail: pack.get(tail_start..).unwrap_or_default().to_vec(),
        }
    }
}

/// Reads back what the server acknowledged: a pack it stored must return
/// its prefix, sealed index and trailer byte for byte as sent before any
/// revision names it, so a server that answers 201 and drops the pack (or
/// truncates it, or replaces its index) is caught before the files are
/// marked synced (SECURITY F4). Both ranges are asked for at once: one
/// round trip and two requests, where reading the index through its
/// trailer took two and three. Corruption inside a blob is left to readers
/// and `keyhold check --read-data`, which authenticate every byte.
async fn verify_stored(api: &Api, collection: CollectionId, id: ObjectId, size: u64, sent: &SentEnds) -> Result<()> {
    let lost = |why: &str| {
        tracing::error!(pack = %id, why, "the server acknowledged a pack it does not return intact");
        ClientError::Integrity(keyhold_core::Error::ContentMismatch)
    };
    let prefix_len = u64::try_from(sent.prefix.len()).unwrap_or(0);
    let read = futures::future::try_join(
        api.get_pack(collection, id, Some(0..prefix_len)),
        api.get_pack(collection, id, Some(sent.tail_start..size)),
    )
    .await;
    match read {
        Ok((prefix, tail)) if prefix == sent.prefix && tail == sent.tail => Ok(()),
        Ok((prefix, _)) if prefix != sent.prefix => Err(lost("prefix differs")),
        Ok(_) => Err(lost("index or trailer differs")),
        Err(ClientError::Server { status: 404 | 416, .. }) => Err(lost("missing")),
        Err(e) => Err(e),
    }
}

/// Buffers of packs already sent, for the next packs: fresh memory costs a
/// page fault per 4 KiB page on first touch, which was a tenth of a large
/// push's CPU time. Bounded, so it never holds more than a few packs.
#[derive(Clone, Default)]
struct PackBuffers(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl PackBuffers {
    /// Buffers kept: as many as packs may be in memory, and the couple
    /// opened without a slot (see [`Uploader::upload`]).
    const KEEP: usize = Uploader::PACKS_IN_MEMORY + 2;

    fn take(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default()
    }

    fn give(&self, buffer: Vec<u8>) {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < Self::KEEP {
            kept.push(buffer);
        }
    }

    /// A pack's bytes, as a body that hands its buffer back once the last
    /// reference (the HTTP client's included) is dropped.
    fn body(&self, pack: Vec<u8>) -> Bytes {
        Bytes::from_owner(PooledPack { bytes: pack, pool: self.clone() })
    }
}

struct PooledPack {
    bytes: Vec<u8>,
    pool: PackBuffers,
}

impl AsRef<[u8]> for PooledPack {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PooledPack {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.bytes));
    }
}

/// A pack being filled or handed on, with the slot that counts its buffer
/// against [`Uploader::PACKS_IN_MEMORY`] (none for the few packs opened
/// where nothing may wait, once every slot is taken).
pub struct Pack {
    builder: PackBuilder,
    slot: Option<OwnedSemaphorePermit>,
}

/// Builds packs on one thread; the set of blobs already stored or queued
/// is shared by every packer of one [`Uploader`], so no blob goes twice.
pub struct Packer {
    keys: Arc<CollectionKeys>,
    known: Arc<std::sync::Mutex<HashSet<BlobId>>>,
    open: Option<Pack>,
    buffers: PackBuffers,
    slots: Arc<Semaphore>,
}

impl Packer {
    /// Another packer sharing this one's set of known blobs and slots.
    pub fn sibling(&self) -> Packer {
        Packer {
            keys: self.keys.clone(),
            known: self.known.clone(),
            open: None,
            buffers: self.buffers.clone(),
            slots: self.slots.clone(),
        }
    }

    /// Counts a blob as known; false if it already was.
    fn is_new(&self, id: BlobId) -> bool {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id)
    }

    /// Adds a blob unless it is known; returns the previous pack once the
    /// blob no longer fits in it.
    pub fn push(&mut self, blob: &SealedBlob) -> Result<Option<Pack>> {
        if !self.is_new(blob.id) {
            return Ok(None);
        }
        self.add(blob.kind, blob.id, &blob.ciphertext)
    }

    /// Seals a blob straight into the pack unless it is known (no sealed
    /// copy of its own). Opening a new pack waits for a slot, but only
    /// after `before_wait` has taken the full one, if any, and sent on
    /// what the caller holds: a packer never waits while holding what would
    /// free a slot, so workers cannot starve each other. Call from a
    /// blocking thread of the runtime.
    pub fn seal_waiting(&mut self, blob: Plaintext<'_>, before_wait: impl FnOnce(Option<Pack>) -> Result<()>) -> Result<()> {
        if !self.is_new(blob.id()) {
            return Ok(());
        }
        let full = self.make_room(blob.sealed_len());
        if self.open.is_none() {
            before_wait(full)?;
            let waiting = self.slots.clone().acquire_owned();
            let slot = tokio::runtime::Handle::try_current()
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .block_on(waiting)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            self.open = Some(self.new_pack(Some(slot)));
        }
        let keys = self.keys.clone();
        self.current().seal(&keys, &blob)?;
        Ok(())
    }

    /// Adds a blob already counted as known (moved from another pack).
    fn add(&mut self, kind: ObjectType, id: BlobId, ciphertext: &[u8]) -> Result<Option<Pack>> {
        let done = self.make_room(ciphertext.len());
        self.current().push_parts(kind, id, ciphertext)?;
        Ok(done)
    }

    /// Closes the pack being built if `len` more bytes would overfill it.
    fn make_room(&mut self, len: usize) -> Option<Pack> {
        let full = self.open.as_ref().is_some_and(|p| !p.builder.is_empty() && p.builder.blob_bytes() + len > PACK_TARGET_LEN);
        if full { self.open.take() } else { None }
    }

    fn new_pack(&self, slot: Option<OwnedSemaphorePermit>) -> Pack {
        Pack { builder: PackBuilder::with_buffer(&self.keys, &mut os_rng(), self.buffers.take()), slot }
    }

    /// The pack being built; a new one takes a free slot if there is one.
    fn current(&mut self) -> &mut PackBuilder {
        let pack = match self.open.take() {
            Some(pack) => pack,
            None => self.new_pack(self.slots.clone().try_acquire_owned().ok()),
        };
        &mut self.open.insert(pack).builder
    }

    /// The pack being built, if it holds anything.
    pub fn take(&mut self) -> Option<Pack> {
        self.open.take().filter(|p| !p.builder.is_empty())
    }
}

impl Uploader {
    /// An uploader for new blobs of `coll`.
    pub fn new(client: &Client, coll: &Collection) -> Result<Self> {
        let known = coll.index.keys().copied().collect();
        Ok(Uploader {
            api: client.api.clone(),
            state: client.state.clone(),
            collection: coll.id,
            packer: Packer {
                keys: coll.current()?.clone(),
                known: Arc::new(std::sync::Mutex::new(known)),
                open: None,
                buffers: PackBuffers::default(),
                slots: Arc::new(Semaphore::new(Self::PACKS_IN_MEMORY)),
            },
            in_flight: JoinSet::new(),
            done: Vec::new(),
            bytes_queued: 0,
        })
    }

    /// A packer for an encryption worker; hand its packs to [`Uploader::upload`].
    pub fn packer(&self) -> Packer {
        self.packer.sibling()
    }

    /// Queues a blob (ignored if already stored).
    pub fn push(&mut self, blob: SealedBlob) -> Result<()> {
        if let Some(full) = self.packer.push(&blob)? {
            self.upload(full);
        }
        Ok(())
    }

    /// Takes over the blobs of a worker's unfinished pack, so a sync's
    /// leftovers share packs rather than each worker sending a small one.
    pub fn absorb(&mut self, partial: &Pack) -> Result<()> {
        for (kind, id, ciphertext) in partial.builder.blobs() {
            if let Some(full) = self.packer.add(kind, id, ciphertext)? {
                self.upload(full);
            }
        }
        Ok(())
    }

    /// Packs whose bytes may be in memory at once, from the first blob
    /// sealed into one until the server has it: one per encryption worker
    /// filling its pack, the rest sent, sealed or waiting for the server's
    /// answer (which comes after its disk's sync, ~15 ms for a 16 MiB pack
    /// here, so several must be on their way to keep the link busy).
    const PACKS_IN_MEMORY: usize = 6;

    /// Seals and uploads a pack in the background. Its slot is released
    /// once the server has it; a pack opened without one (the few packs of
    /// manifests and leftovers, sent where nothing can wait) takes a free
    /// slot if there is one now, so they count too.
    pub fn upload(&mut self, pack: Pack) {
        let Pack { builder, slot } = pack;
        self.bytes_queued += u64::try_from(builder.blob_bytes()).unwrap_or(0);
        let permit = slot.or_else(|| self.packer.slots.clone().try_acquire_owned().ok());
        let (api, keys, state, collection) = (self.api.clone(), self.packer.keys.clone(), self.state.clone(), self.collection);
        let buffers = self.packer.buffers.clone();
        self.in_flight.spawn(async move {
            // Sealing and hashing a full pack takes a few milliseconds; off
            // the packing thread, it overlaps with packing the next one.
            let sealing = keys.clone();
            let (id, bytes, entries) = tokio::task::spawn_blocking(move || builder.finish(&sealing))
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))??;
            let size = u64::try_from(bytes.len()).unwrap_or(0);
            let sent = SentEnds::of(&bytes, &entries);
            let bytes = buffers.body(bytes);
            let mut attempt = 0;
            loop {
                // Uploads are idempotent: a retry after a dropped connection is safe (F3).
                match api.put_pack(collection, id, bytes.clone()).await {
                    Ok(()) => {
                        // Reading back and recording take round trips but
                        // no pack-sized memory: the next pack may go.
                        drop((bytes, permit));
                        verify_stored(&api, collection, id, size, &sent).await?;
                        // Recorded at once, so a sync that stops after this
                        // point resumes without sending this pack again (F3).
                        // A blocking thread waits for SQLite's sync, so the
                        // runtime goes on driving the other uploads.
                        let entries = tokio::task::spawn_blocking(move || {
                            state.add_packs(collection, [(id, size, entries.as_slice())]).map(|()| entries)
                        })
                        .await
                        .map_err(|e| ClientError::Protocol(e.to_string()))??;
                        return Ok((id, size, entries));
                    }
                    Err(ClientError::Http(e)) if attempt < 3 => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "pack upload failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        });
    }

    /// Collects the uploads that ended; reports a failed one.
    pub fn reap(&mut self) -> Result<()> {
        while let Some(done) = self.in_flight.try_join_next() {
            self.done.push(done.map_err(|e| ClientError::Protocol(e.to_string()))??);
        }
        Ok(())
    }

    /// Starts uploading the pack being built, however full.
    pub fn flush(&mut self) {
        if let Some(last) = self.packer.take() {
            self.upload(last);
        }
    }

    /// Uploads what is left, waits for every upload, and adds the packs
    /// to the collection's index (each upload recorded its pack in the
    /// local state as soon as the server had it).
    pub async fn finish(mut self, coll: &mut Collection) -> Result<u64> {
        self.flush();
        while let Some(done) = self.in_flight.join_next().await {
            self.done.push(done.map_err(|e| ClientError::Protocol(e.to_string()))??);
        }
        for (id, _, entries) in &self.done {
            for e in entries {
                coll.index
                    .insert(e.id, BlobLocation { kind: e.kind, pack: *id, offset: u64::from(e.offset), len: u64::from(e.len) });
            }
        }
        Ok(self.bytes_queued)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use keyhold_core::{CollectionKey, ObjectType, os_rng};

    use super::*;

    #[test]
    fn runs_join_near_blobs_of_a_pack_up_to_a_bounded_span() {
        let (p, q) = (ObjectId([1; 32]), ObjectId([2; 32]));
        let at = |n: u8, pack: ObjectId, offset: u64, len: u64| {
            (BlobId([n; 32]), BlobLocation { kind: ObjectType::Chunk, pack, offset, len })
        };
        let mib = 1u64 << 20;
        let located = vec![
            at(3, p, 3 * mib, mib),
            at(1, p, 0, mib),
            at(2, p, mib + 10, mib),
            at(1, p, 0, mib),
            // Past the gap after blob 3: a new run.
            at(4, p, 5 * mib + 11, mib),
            // Near blob 4, but the run would span more than MAX_RUN.
            at(5, p, 6 * mib + 11, 7 * mib + 1),
            at(6, q, 0, 20 * mib),
        ];
        let mut runs: Vec<Vec<u8>> = runs(located)
            .into_iter()
            .map(|(pack, run)| {
                assert!(run.iter().all(|(_, loc)| loc.pack == pack));
                run.iter().map(|(id, _)| id.0[0]).collect()
            })
            .collect();
        runs.sort();
        assert_eq!(runs, vec![vec![1, 2, 3], vec![4], vec![5], vec![6]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_packer_hands_on_its_full_pack_before_it_waits_for_room() {
        let keys = Arc::new(CollectionKeys::derive(&CollectionKey::from_bytes([7; 32]), CollectionId([1; 16]), 1));
        // One slot: the first pack takes it, so the second must wait for
        // the first to be sent and dropped.
        let slots = Arc::new(Semaphore::new(1));
        let mut packer = Packer {
            keys: keys.clone(),
            known: Arc::default(),
            open: None,
            buffers: PackBuffers::default(),
            slots: slots.clone(),
        };
        // A failed assertion must not leave the worker waiting forever
        // (the runtime waits for it): closing the slots wakes it.
        struct Unblock(Arc<Semaphore>);
        impl Drop for Unblock {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let _unblock = Unblock(slots);
        let (handed, received) = std::sync::mpsc::channel();
        let worker = tokio::task::spawn_blocking(move || {
            // Four fit in a pack, with room for their tags.
            let quarter = PACK_TARGET_LEN / 4 - 4096;
            for i in 0..5u8 {
                let data = vec![i; quarter];
                let blob = keys.identify(ObjectType::Chunk, &data).unwrap();
                packer
                    .seal_waiting(blob, |full| {
                        handed.send(full).unwrap();
                        Ok(())
                    })
                    .unwrap();
            }
            packer.take()
        });
        // The first blob opens a pack with the free slot: nothing to hand on.
        let wait = std::time::Duration::from_secs(10);
        assert!(received.recv_timeout(wait).unwrap().is_none());
        let first = received.recv_timeout(wait).unwrap().expect("the full pack, handed on before waiting");
        assert_eq!(first.builder.blobs().count(), 4);
        assert!(first.slot.is_some());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!worker.is_finished(), "the fifth blob waits while the first pack holds the only slot");
        drop(first);
        let last = tokio::time::timeout(wait, worker).await.unwrap().unwrap().unwrap();
        assert_eq!(last.builder.blobs().count(), 1);
        assert!(last.slot.is_some());
    }

    #[test]
    fn a_packs_sent_ends_are_its_prefix_and_what_its_trailer_points_at() {
        let keys = CollectionKeys::derive(&CollectionKey::from_bytes([7; 32]), CollectionId([1; 16]), 1);
        for blobs in [1usize, 3] {
            let mut builder = PackBuilder::new(&keys, &mut os_rng());
            for i in 0..blobs {
                let blob = keys.seal_blob(ObjectType::Chunk, &vec![u8::try_from(i).unwrap(); 1000 + i]).unwrap();
                builder.push(&blob).unwrap();
            }
            let (_, pack, entries) = builder.finish(&keys).unwrap();
            let sent = SentEnds::of(&pack, &entries);
            let prefix = &pack[..PACK_PREFIX_LEN];
            let (index_offset, _) = open_trailer(&keys, prefix, &pack[pack.len() - PACK_TRAILER_LEN..], pack.len()).unwrap();
            assert_eq!(sent.prefix, prefix);
            assert_eq!(sent.tail_start, u64::try_from(index_offset).unwrap());
            assert_eq!(sent.tail, pack[index_offset..]);
            assert_eq!(
                open_index(&keys, prefix, &sent.tail[..sent.tail.len() - PACK_TRAILER_LEN], index_offset).unwrap(),
                entries
            );
        }
    }
}
