//! `keyhold check`: authenticates the whole history and says exactly what is
//! missing or corrupt, and which files and revisions that costs.
//!
//! Every listing, manifest and (with `--read-data`) chunk reachable from any
//! verified revision is fetched and opened once. A failure does not stop the
//! check: it is recorded against the object, and once everything is read a
//! second walk over the (now cached) trees finds the paths and revisions each
//! damaged object belongs to, so the report reads "big.bin in revisions 2–4"
//! rather than a bare blob id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use keyhold_core::{BlobId, BlobRef, ChunkRef, Entry, EntryKind, ObjectId, ObjectType, VerifiedRevision};
use serde::Serialize;

use crate::client::{Client, Collection};
use crate::error::{ClientError, Result};

/// Chunks fetched per round of range reads: enough for the reads of one pack
/// to coalesce, few enough that one bad pack does not hide a batch's others.
const CHUNK_BATCH: usize = 64;

/// What `keyhold check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Revisions verified.
    pub revisions: usize,
    /// Listings and manifests authenticated.
    pub metadata_blobs: usize,
    /// Distinct chunks the history names.
    pub chunks: usize,
    /// Chunks downloaded and authenticated (all of them with `--read-data`,
    /// the sampled share with `--sample`, none without).
    pub chunks_read: usize,
    /// Bytes of file content read back and authenticated.
    pub bytes_read: u64,
    /// Everything missing or corrupt, one entry per object.
    pub problems: Vec<Problem>,
}

/// One damaged object and what it costs.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// Missing (the server does not have it) or corrupt (it does not verify).
    pub state: Damage,
    /// What kind of object.
    pub object: Object,
    /// The blob id, hex (absent for the history itself).
    pub id: Option<String>,
    /// Why, in words.
    pub detail: String,
    /// The files and folders that need it, with the revisions they are in.
    pub affects: Vec<Affected>,
}

/// How an object is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Damage {
    /// Not stored, not listed, or not served.
    Missing,
    /// Served, but fails authentication or disagrees with what names it.
    Corrupt,
}

/// The kinds of object `check` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    /// The signed revision history.
    History,
    /// A pack whose index cannot be read: the blobs in it are unknown.
    Pack,
    /// A folder listing.
    Listing,
    /// A file manifest.
    Manifest,
    /// A chunk of file content.
    Chunk,
}

/// A path that depends on a damaged object.
#[derive(Debug, Serialize)]
pub struct Affected {
    /// Path in the collection ("" is the top folder).
    pub path: String,
    /// Revisions (sequence numbers) in which the path needs the object.
    pub revisions: Vec<u64>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            Damage::Missing => "missing",
            Damage::Corrupt => "corrupt",
        };
        let object = match self.object {
            Object::History => "history",
            Object::Pack => "pack",
            Object::Listing => "folder listing",
            Object::Manifest => "file manifest",
            Object::Chunk => "chunk",
        };
        write!(f, "{state} {object}")?;
        if let Some(id) = &self.id {
            write!(f, " {id}")?;
        }
        write!(f, ": {}", self.detail)?;
        for (i, a) in self.affects.iter().enumerate() {
            let path = if a.path.is_empty() { "the top folder" } else { &a.path };
            write!(f, "{} {path} ({})", if i == 0 { "; affects" } else { "," }, revision_ranges(&a.revisions))?;
        }
        Ok(())
    }
}

/// "revision 3" or "revisions 1–4, 7".
fn revision_ranges(seqs: &[u64]) -> String {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &s in seqs {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => ranges.push((s, s)),
        }
    }
    let parts: Vec<String> = ranges.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}–{b}") }).collect();
    let noun = if seqs.len() == 1 { "revision" } else { "revisions" };
    format!("{noun} {}", parts.join(", "))
}

/// Authenticates the whole history: every revision, every listing and
/// manifest reachable from any of them, and (with `read_data`) every chunk
/// — or, with `sample_percent` below 100, that share of them, chosen at
/// random on every run so that repeated checks cover everything.
pub async fn check(client: &Client, coll: &mut Collection, read_data: bool, sample_percent: u8) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let history = match client.full_history(coll).await {
        Ok(h) => h,
        Err(e @ ClientError::Integrity(_)) => {
            report.problems.push(Problem {
                state: Damage::Corrupt,
                object: Object::History,
                id: None,
                detail: describe(&e),
                affects: Vec::new(),
            });
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    report.revisions = history.len();
    let mut walk = Walk::default();
    for (pack, e) in client.refresh_index_past_damage(coll).await? {
        walk.packs.push((pack, format!("its index cannot be read: {}", describe(&e))));
    }
    for rev in &history {
        walk.open_tree(client, coll, rev).await?;
    }
    report.metadata_blobs = walk.listings.values().chain(walk.manifests.values().map(|m| &m.1)).filter(|ok| **ok).count();
    report.chunks = walk.chunks.len();
    if read_data {
        let chosen = sample(walk.chunks.keys().copied().collect(), sample_percent)?;
        for batch in chosen.chunks(CHUNK_BATCH) {
            let refs: Vec<BlobRef> =
                batch.iter().filter_map(|id| walk.chunks.get(id).map(|(epoch, _)| BlobRef { epoch: *epoch, id: *id })).collect();
            let mut fetched = walk.fetch(client, coll, &refs, Object::Chunk).await?;
            for r in refs {
                let Some(ciphertext) = fetched.remove(&r.id) else { continue };
                let expected = walk.chunks.get(&r.id).map_or(0, |(_, len)| *len);
                report.chunks_read += 1;
                match coll.keys_for(r.epoch).and_then(|k| Ok(k.open_blob(ObjectType::Chunk, &r.id, ciphertext)?)) {
                    Ok(plain) if u64::try_from(plain.len()).ok() == Some(u64::from(expected)) => {
                        report.bytes_read += u64::from(expected);
                    }
                    Ok(_) => walk.damaged(
                        r.id,
                        Damage::Corrupt,
                        Object::Chunk,
                        "its length is not the one the manifest records".into(),
                    ),
                    Err(e) => walk.damaged(r.id, Damage::Corrupt, Object::Chunk, describe(&e)),
                }
            }
        }
    } else {
        // Without reading, a chunk can still be found missing from every pack.
        for id in walk.chunks.keys() {
            if !coll.index.contains_key(id) {
                walk.problems.insert(*id, (Damage::Missing, Object::Chunk, "not in any pack the server lists".into()));
            }
        }
    }
    report.problems = walk.report(&history);
    Ok(report)
}

/// Which chunks to read: all of them, or `percent` of them (at least one),
/// picked uniformly at random.
fn sample(mut ids: Vec<BlobId>, percent: u8) -> Result<Vec<BlobId>> {
    if percent >= 100 || ids.is_empty() {
        return Ok(ids);
    }
    let want = (ids.len() * usize::from(percent)).div_ceil(100).max(1);
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| ClientError::Usage(format!("no randomness for --sample: {e}")))?;
    // Sorting by a keyed hash under a fresh key is a uniformly random order.
    ids.sort_by_cached_key(|id| *blake3::keyed_hash(&key, id.as_bytes()).as_bytes());
    ids.truncate(want);
    Ok(ids)
}

/// Every listing and manifest opened so far, the chunks they name, and the
/// damage found.
#[derive(Default)]
struct Walk {
    /// Listing id → its entries (absent from `entries` when it could not be opened).
    listings: HashMap<BlobId, bool>,
    entries: HashMap<BlobId, Vec<Entry>>,
    /// Manifest id → (its chunks, opened).
    manifests: HashMap<BlobId, (Vec<ChunkRef>, bool)>,
    /// Chunk id → (epoch, plaintext length).
    chunks: BTreeMap<BlobId, (u32, u32)>,
    problems: BTreeMap<BlobId, (Damage, Object, String)>,
    /// Packs the server lists but whose index it will not serve intact.
    packs: Vec<(ObjectId, String)>,
}

impl Walk {
    fn damaged(&mut self, id: BlobId, state: Damage, object: Object, detail: String) {
        self.problems.entry(id).or_insert((state, object, detail));
    }

    /// Opens every listing and manifest of one revision's tree not opened yet.
    async fn open_tree(&mut self, client: &Client, coll: &mut Collection, rev: &VerifiedRevision) -> Result<()> {
        let mut level = vec![rev.revision.root];
        while !level.is_empty() {
            let fresh: Vec<BlobRef> = level.into_iter().filter(|r| !self.listings.contains_key(&r.id)).collect();
            let mut fetched = self.fetch(client, coll, &fresh, Object::Listing).await?;
            let mut files: Vec<Entry> = Vec::new();
            level = Vec::new();
            for r in fresh {
                let opened = match fetched.remove(&r.id) {
                    None => false,
                    Some(ciphertext) => match coll.keys_for(r.epoch).and_then(|k| Ok(k.open_listing(&r.id, ciphertext)?)) {
                        Ok(listing) => {
                            for e in listing.entries() {
                                match e.kind {
                                    EntryKind::Folder => level.push(e.target),
                                    EntryKind::File => files.push(e.clone()),
                                }
                            }
                            self.entries.insert(r.id, listing.entries().to_vec());
                            true
                        }
                        Err(e) => {
                            self.damaged(r.id, Damage::Corrupt, Object::Listing, describe(&e));
                            false
                        }
                    },
                };
                self.listings.insert(r.id, opened);
            }
            files.retain(|e| !self.manifests.contains_key(&e.target.id));
            files.sort_by_key(|e| e.target.id);
            files.dedup_by_key(|e| e.target.id);
            let refs: Vec<BlobRef> = files.iter().map(|e| e.target).collect();
            let mut fetched = self.fetch(client, coll, &refs, Object::Manifest).await?;
            for e in files {
                let id = e.target.id;
                let opened = match fetched.remove(&id) {
                    None => None,
                    Some(ciphertext) => match coll
                        .keys_for(e.target.epoch)
                        .and_then(|k| Ok(k.open_manifest(&id, ciphertext)?))
                        .and_then(|m| Ok(e.check_manifest(&m).map(|()| m)?))
                    {
                        Ok(m) => Some(m.chunks),
                        Err(err) => {
                            self.damaged(id, Damage::Corrupt, Object::Manifest, describe(&err));
                            None
                        }
                    },
                };
                let ok = opened.is_some();
                let chunks = opened.unwrap_or_default();
                for c in &chunks {
                    self.chunks.insert(c.id, (e.target.epoch, c.len));
                }
                self.manifests.insert(id, (chunks, ok));
            }
        }
        Ok(())
    }

    /// Fetches `refs`, recording each one the server does not have (or will
    /// not serve) as missing rather than giving up: one lost pack must not
    /// hide the state of the rest.
    async fn fetch(
        &mut self,
        client: &Client,
        coll: &mut Collection,
        refs: &[BlobRef],
        object: Object,
    ) -> Result<HashMap<BlobId, Vec<u8>>> {
        let listed: Vec<BlobId> = refs.iter().map(|r| r.id).filter(|id| coll.index.contains_key(id)).collect();
        for r in refs.iter().filter(|r| !coll.index.contains_key(&r.id)) {
            self.damaged(r.id, Damage::Missing, object, "not in any pack the server lists".into());
        }
        match client.fetch_blobs(coll, &listed).await {
            Ok(blobs) => Ok(blobs),
            // Transport failures are not findings about the data: stop.
            Err(e @ (ClientError::Http(_) | ClientError::Io { .. } | ClientError::State(_))) => Err(e),
            Err(_) => {
                // Some pack failed: read blob by blob to find which.
                let mut blobs = HashMap::new();
                for id in listed {
                    match client.fetch_blobs(coll, &[id]).await {
                        Ok(mut one) => blobs.extend(one.remove(&id).map(|b| (id, b))),
                        Err(e @ (ClientError::Http(_) | ClientError::Io { .. } | ClientError::State(_))) => return Err(e),
                        Err(e) => {
                            self.damaged(id, Damage::Missing, object, format!("the server does not serve it: {}", describe(&e)))
                        }
                    }
                }
                Ok(blobs)
            }
        }
    }

    /// Turns the damage found into problems, each with the paths and
    /// revisions that need the object.
    fn report(&self, history: &[VerifiedRevision]) -> Vec<Problem> {
        let mut affects: HashMap<BlobId, BTreeMap<String, BTreeSet<u64>>> = HashMap::new();
        if !self.problems.is_empty() {
            for rev in history {
                let seq = rev.revision.seq;
                let mut note = |id: &BlobId, path: &str| {
                    if self.problems.contains_key(id) {
                        affects.entry(*id).or_default().entry(path.to_owned()).or_default().insert(seq);
                    }
                };
                let mut level: Vec<(String, BlobId)> = vec![(String::new(), rev.revision.root.id)];
                while let Some((prefix, listing)) = level.pop() {
                    note(&listing, &prefix);
                    for e in self.entries.get(&listing).into_iter().flatten() {
                        let path = if prefix.is_empty() { e.name.clone() } else { format!("{prefix}/{}", e.name) };
                        match e.kind {
                            EntryKind::Folder => level.push((path, e.target.id)),
                            EntryKind::File => {
                                note(&e.target.id, &path);
                                for c in self.manifests.get(&e.target.id).map(|m| m.0.as_slice()).unwrap_or_default() {
                                    note(&c.id, &path);
                                }
                            }
                        }
                    }
                }
            }
        }
        let packs = self.packs.iter().map(|(id, detail)| Problem {
            state: Damage::Missing,
            object: Object::Pack,
            id: Some(id.to_hex()),
            detail: detail.clone(),
            affects: Vec::new(),
        });
        let blobs = self.problems.iter().map(|(id, (state, object, detail))| Problem {
            state: *state,
            object: *object,
            id: Some(id.to_hex()),
            detail: detail.clone(),
            affects: affects
                .remove(id)
                .unwrap_or_default()
                .into_iter()
                .map(|(path, revisions)| Affected { path, revisions: revisions.into_iter().collect() })
                .collect(),
        });
        packs.chain(blobs).collect()
    }
}

/// Why an object failed, in words: for a verification failure the core's
/// reason alone (the client's "integrity check failed" preamble would repeat
/// on every line).
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Integrity(reason) => reason.to_string(),
        other => error_chain(other),
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
