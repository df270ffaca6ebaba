//! SECURITY F5: the sync decision (`keyhold_client::merge`, the code the
//! real engine runs) driven by a seeded, deterministic simulation of several
//! devices and one server, with crashes, partitions, lost, duplicated and
//! reordered commit requests, and users editing all along.
//!
//! Each device has a folder (an in-memory file system with stats), the
//! local state of `sync.rs` (base, base head, pending commit) and at most
//! one sync round in flight, run step by step as `sync.rs` runs it: verify
//! (and adopt or drop a pending commit) → scan → plan, read and upload →
//! commit by compare-and-swap (recording the pending commit first) → apply
//! the guarded local changes one at a time → save the base. The server keeps
//! a linear history of trees and accepts a commit only on `seq` + `prev`.
//!
//! Checked after every event: plans give well-formed trees; the history is
//! linear and no revision lands twice; a commit overwrites or deletes a
//! file version only if its device's folder once held that version at that
//! path (no deletion a device did not see); every content a user ever wrote
//! is still somewhere, in a folder or the head tree (at its path or as a
//! conflict copy), unless some user overwrote or deleted it (no lost edit,
//! committed or not). Checked at the end, after every device has synced
//! until nothing changes: all folders equal the head tree (convergence),
//! and every such content is in it.
//!
//! `KEYHOLD_SIM_SEEDS=n` runs seeds `KEYHOLD_SIM_START..+n` (default 300
//! from 0); `KEYHOLD_SIM_SEED=s` replays one seed and prints its event log;
//! `KEYHOLD_SIM_EVENTS=k` cuts a seed's schedule to `k` events. A failure
//! prints the seed, its shortest failing schedule and the event log.
//! `scripts/simulate.sh N` runs N seeds in release mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::as_conversions)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use keyhold_client::client::{RemoteNode, Tree};
use keyhold_client::merge::{self, Action, Base, Local, LocalNode, Sides};
use keyhold_client::state::{BaseEntry, Stat};
use keyhold_core::{BlobId, BlobRef, ChunkRef, FileId, FileMeta, GENESIS_PREV, Head, Manifest, ObjectId};

/// Names paths are made of: few, so that devices collide.
const NAMES: [&str; 4] = ["a", "b", "c.txt", "d"];
/// Contents several devices write independently (1 is the empty file);
/// every other content is written once.
const SHARED: [u64; 3] = [1, 2, 3];
const SECOND: i64 = 1_000_000_000;
/// Rounds one sync tries before giving up (`sync.rs`, `MAX_ROUNDS`).
const MAX_ROUNDS: usize = 8;
/// Passes of "every device syncs" allowed to reach a quiet state.
const MAX_QUIET_PASSES: usize = 12;

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() { None } else { Some(items[self.below(items.len())].clone()) }
    }
}

/// A file or folder of a simulated file system.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    dir: bool,
    content: u64,
    mode: u32,
    mtime_ns: i64,
    stat: Stat,
}

type Folder = BTreeMap<String, Node>;

fn parent_of(p: &str) -> Option<&str> {
    p.rsplit_once('/').map(|(d, _)| d)
}

fn name_of(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn ancestors(p: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut at = p;
    while let Some(parent) = parent_of(at) {
        out.push(parent);
        at = parent;
    }
    out.reverse();
    out
}

fn is_under(p: &str, dir: &str) -> bool {
    p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
}

/// Every entry's parent is a folder of the same tree.
fn well_formed<'a>(paths: impl Iterator<Item = (&'a String, bool)>) -> Result<(), String> {
    let dirs: Vec<(&String, bool)> = paths.collect();
    let kinds: HashMap<&str, bool> = dirs.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    for (p, _) in &dirs {
        if let Some(parent) = parent_of(p) {
            match kinds.get(parent) {
                Some(true) => {}
                Some(false) => return Err(format!("{p} lies below the file {parent}")),
                None => return Err(format!("{p} has no parent folder")),
            }
        }
    }
    Ok(())
}

fn chunks_of(content: u64) -> (u64, Vec<ChunkRef>) {
    if content == 1 {
        return (0, Vec::new());
    }
    let len = 1 + (content % 97) as u32;
    let mut id = [0xc7u8; 32];
    id[..8].copy_from_slice(&content.to_le_bytes());
    (u64::from(len), vec![ChunkRef { id: BlobId(id), len }])
}

fn content_of(m: &Manifest) -> u64 {
    m.chunks.first().map_or(1, |c| u64::from_le_bytes(c.id.0[..8].try_into().unwrap()))
}

/// A manifest's blob id: a hash of what it says, as a keyed hash of the
/// sealed plaintext is for real.
fn blob_id(m: &Manifest) -> BlobId {
    let mut h = blake3::Hasher::new();
    h.update(&m.meta.file_id.0);
    h.update(&m.meta.version.to_le_bytes());
    h.update(m.meta.name.as_bytes());
    h.update(&m.meta.mode.to_le_bytes());
    h.update(&m.meta.mtime_ns.to_le_bytes());
    h.update(&content_of(m).to_le_bytes());
    BlobId(*h.finalize().as_bytes())
}

/// A tree as `seal_tree` writes it: folder targets are derived, not chosen.
fn sealed(tree: &Tree) -> Tree {
    tree.iter()
        .map(|(p, n)| {
            let mut n = n.clone();
            if n.is_dir {
                n.size = 0;
                n.target = BlobRef { epoch: 0, id: BlobId([0; 32]) };
            }
            (p.clone(), n)
        })
        .collect()
}

struct Revision {
    seq: u64,
    id: ObjectId,
    tree: Tree,
}

#[derive(Default)]
struct Server {
    history: Vec<Revision>,
    /// Every manifest uploaded, by blob id (packs are not modelled).
    blobs: HashMap<BlobId, Manifest>,
}

impl Server {
    fn head(&self) -> Option<Head> {
        self.history.last().map(|r| Head { seq: r.seq, id: r.id })
    }

    fn head_tree(&self) -> Tree {
        self.history.last().map(|r| r.tree.clone()).unwrap_or_default()
    }

    fn content(&self, node: &RemoteNode) -> u64 {
        self.blobs.get(&node.target.id).map_or(0, content_of)
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Commit { from: usize, round: u64, seq: u64, prev: ObjectId, id: ObjectId, tree: Tree },
    Reply { to: usize, round: u64, accepted: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Verify,
    Scan,
    Plan,
    Commit,
    Await,
    Apply,
    Save,
}

/// A sync round in flight: what `sync_round` holds in its variables.
struct Round {
    id: u64,
    step: Step,
    head: Option<Head>,
    head_tree: Tree,
    base: Base,
    base_head: Option<Head>,
    remote: Tree,
    local: Local,
    new_tree: Tree,
    new_base: Base,
    actions: Vec<Action>,
    next_action: usize,
    fetched: HashMap<String, RemoteNode>,
    sent: Option<Head>,
    committed: Option<Head>,
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Running,
    Done,
    HeadMoved,
    Failed,
}

struct Device {
    id: String,
    folder: Folder,
    // The local state store: survives crashes.
    base: Base,
    base_head: Option<Head>,
    pending: Option<(Head, Base)>,
    // Lost in a crash.
    round: Option<Round>,
    partitioned: bool,
    /// Every (path, content) this folder ever held: what the device saw.
    held: HashSet<(String, u64)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    events: u64,
    rounds: u64,
    commits: u64,
    head_moved: u64,
    duplicates_refused: u64,
    crashes: u64,
    failed_rounds: u64,
    conflicts: u64,
}

struct Sim {
    rng: Rng,
    clock: i64,
    uniq: i64,
    next_content: u64,
    next_id: u64,
    server: Server,
    devices: Vec<Device>,
    net: Vec<Msg>,
    log: Option<Vec<String>>,
    event: u64,
    /// Content → what wrote it, for every content a user wrote.
    written: BTreeMap<u64, String>,
    /// Contents some user overwrote or deleted (or moved away).
    user_removed: HashSet<u64>,
    counts: Counts,
}

macro_rules! log {
    ($sim:expr, $($arg:tt)*) => {
        if let Some(log) = $sim.log.as_mut() {
            log.push(format!("#{:<4} {}", $sim.event, format!($($arg)*)));
        }
    };
}

impl Sim {
    fn new(seed: u64, devices: usize, log: bool) -> Self {
        Sim {
            rng: Rng(seed),
            clock: 1_700_000_000 * SECOND,
            uniq: 0,
            next_content: 100,
            next_id: 1,
            server: Server::default(),
            devices: (0..devices)
                .map(|i| Device {
                    id: format!("dev{i}abcdef"),
                    folder: Folder::new(),
                    base: Base::new(),
                    base_head: None,
                    pending: None,
                    round: None,
                    partitioned: false,
                    held: HashSet::new(),
                })
                .collect(),
            net: Vec::new(),
            log: log.then(Vec::new),
            event: 0,
            written: BTreeMap::new(),
            user_removed: HashSet::new(),
            counts: Counts::default(),
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A stat as a write at this moment leaves it: change times are unique.
    fn stat(&mut self, size: u64, mtime_ns: i64, ino: Option<u64>) -> Stat {
        self.uniq += 1;
        Stat { size, mtime_ns, ino: ino.unwrap_or(self.uniq as u64), ctime_ns: self.clock + self.uniq }
    }

    fn file(&mut self, content: u64, mode: u32, ino: Option<u64>) -> Node {
        let size = chunks_of(content).0;
        let now = self.clock + self.uniq + 1;
        let stat = self.stat(size, now, ino);
        Node { dir: false, content, mode, mtime_ns: now, stat }
    }

    fn dir(&mut self, mode: u32) -> Node {
        let stat = self.stat(0, self.clock, None);
        Node { dir: true, content: 0, mode, mtime_ns: self.clock, stat }
    }

    fn put(&mut self, d: usize, path: &str, node: Node) {
        if !node.dir {
            self.devices[d].held.insert((path.to_owned(), node.content));
        }
        self.devices[d].folder.insert(path.to_owned(), node);
    }

    // ---- Users -------------------------------------------------------

    fn random_path(&mut self) -> String {
        let depth = 1 + [0, 0, 0, 1, 1, 2][self.rng.below(6)];
        (0..depth).map(|_| NAMES[self.rng.below(NAMES.len())]).collect::<Vec<_>>().join("/")
    }

    fn new_content(&mut self, d: usize, path: &str) -> u64 {
        if self.rng.chance(8) {
            return SHARED[self.rng.below(SHARED.len())];
        }
        self.next_content += 1;
        let c = self.next_content;
        self.written.insert(c, format!("dev{d} wrote it at {path}"));
        c
    }

    /// Removes `path` and everything below it; what a user removes.
    fn remove_tree(&mut self, d: usize, path: &str) {
        let doomed: Vec<String> =
            self.devices[d].folder.keys().filter(|p| p.as_str() == path || is_under(p, path)).cloned().collect();
        for p in doomed {
            if let Some(n) = self.devices[d].folder.remove(&p) {
                if !n.dir {
                    self.user_removed.insert(n.content);
                }
            }
        }
    }

    /// `mkdir -p` of `path`'s parents; false if a file is in the way.
    fn make_parents(&mut self, d: usize, path: &str) -> bool {
        for a in ancestors(path) {
            match self.devices[d].folder.get(a) {
                Some(n) if n.dir => {}
                Some(_) => return false,
                None => {
                    let n = self.dir(0o755);
                    self.put(d, a, n);
                }
            }
        }
        true
    }

    fn write(&mut self, d: usize, path: &str) {
        if self.devices[d].folder.get(path).is_some_and(|n| n.dir) || !self.make_parents(d, path) {
            return;
        }
        let content = self.new_content(d, path);
        let old = self.devices[d].folder.get(path).cloned();
        if let Some(old) = &old {
            self.user_removed.insert(old.content);
        }
        let node = self.file(content, old.as_ref().map_or(0o644, |o| o.mode), old.map(|o| o.stat.ino));
        log!(self, "dev{d} user writes {path} = c{content}");
        self.put(d, path, node);
    }

    fn user_edit(&mut self, d: usize) {
        let folder = &self.devices[d].folder;
        let files: Vec<String> = folder.iter().filter(|(_, n)| !n.dir).map(|(p, _)| p.clone()).collect();
        let dirs: Vec<String> = folder.iter().filter(|(_, n)| n.dir).map(|(p, _)| p.clone()).collect();
        let op = self.rng.below(100);
        let file = self.rng.pick(&files);
        let dir = self.rng.pick(&dirs);
        match (op, file, dir) {
            (0..=29, Some(f), _) => self.write(d, &f),
            (30..=51, ..) => {
                let p = self.random_path();
                self.write(d, &p);
            }
            (52..=61, Some(f), _) => {
                log!(self, "dev{d} user deletes {f}");
                self.remove_tree(d, &f);
            }
            (62..=66, Some(f), _) => {
                let old = self.devices[d].folder[&f].clone();
                let mut node = self.file(old.content, old.mode, Some(old.stat.ino));
                if self.rng.chance(50) {
                    node.mode = if old.mode == 0o644 { 0o600 } else { 0o644 };
                    node.mtime_ns = old.mtime_ns;
                    log!(self, "dev{d} user chmods {f} {:o}", node.mode);
                } else {
                    log!(self, "dev{d} user touches {f}");
                }
                self.put(d, &f, node);
            }
            (67..=72, ..) => {
                let p = self.random_path();
                if !self.devices[d].folder.contains_key(&p) && self.make_parents(d, &p) {
                    log!(self, "dev{d} user makes folder {p}");
                    let n = self.dir(0o755);
                    self.put(d, &p, n);
                }
            }
            (73..=78, _, Some(dir)) => {
                log!(self, "dev{d} user removes folder {dir}");
                self.remove_tree(d, &dir);
            }
            (79..=83, _, Some(dir)) => {
                log!(self, "dev{d} user replaces folder {dir} by a file");
                self.remove_tree(d, &dir);
                self.write(d, &dir);
            }
            (84..=88, Some(f), _) => {
                log!(self, "dev{d} user replaces file {f} by a folder");
                self.remove_tree(d, &f);
                let n = self.dir(0o755);
                self.put(d, &f, n);
                if self.rng.chance(70) {
                    let child = format!("{f}/{}", NAMES[self.rng.below(NAMES.len())]);
                    self.write(d, &child);
                }
            }
            (89..=95, Some(f), _) => {
                let to = self.random_path();
                if !self.devices[d].folder.contains_key(&to) && !is_under(&to, &f) && self.make_parents(d, &to) {
                    log!(self, "dev{d} user moves {f} to {to}");
                    let old = self.devices[d].folder.remove(&f).unwrap();
                    let node = Node { stat: self.stat(old.stat.size, old.mtime_ns, Some(old.stat.ino)), ..old };
                    self.put(d, &to, node);
                }
            }
            _ => {}
        }
    }

    // ---- Rounds ------------------------------------------------------

    fn start_round(&mut self, d: usize) {
        let id = self.fresh_id();
        self.counts.rounds += 1;
        self.devices[d].round = Some(Round {
            id,
            step: Step::Verify,
            head: None,
            head_tree: Tree::new(),
            base: Base::new(),
            base_head: None,
            remote: Tree::new(),
            local: Local::new(),
            new_tree: Tree::new(),
            new_base: Base::new(),
            actions: Vec::new(),
            next_action: 0,
            fetched: HashMap::new(),
            sent: None,
            committed: None,
        });
    }

    fn fail_round(&mut self, d: usize, why: &str) -> Ended {
        log!(self, "dev{d} round fails: {why}");
        self.counts.failed_rounds += 1;
        self.devices[d].round = None;
        Ended::Failed
    }

    /// Runs the next step of device `d`'s round (starting one if needed).
    fn step(&mut self, d: usize) -> Result<Ended, String> {
        if self.devices[d].round.is_none() {
            self.start_round(d);
        }
        let step = self.devices[d].round.as_ref().map(|r| r.step).unwrap();
        match step {
            Step::Verify => Ok(self.verify(d)),
            Step::Scan => {
                let local = scan(&self.devices[d].folder);
                let round = self.devices[d].round.as_mut().unwrap();
                round.local = local;
                round.step = Step::Plan;
                Ok(Ended::Running)
            }
            Step::Plan => self.plan(d),
            Step::Commit => Ok(self.commit(d)),
            Step::Await => Ok(Ended::Running),
            Step::Apply => Ok(self.apply_one(d)),
            Step::Save => Ok(self.save(d)),
        }
    }

    fn verify(&mut self, d: usize) -> Ended {
        if self.devices[d].partitioned {
            return self.fail_round(d, "offline");
        }
        let head = self.server.head();
        // `adopt_pending`.
        if let Some((pending, pending_base)) = self.devices[d].pending.take() {
            let landed = match head {
                Some(h) if h == pending => true,
                Some(h) if h.seq > pending.seq => self.server.history[pending.seq as usize].id == pending.id,
                _ => false,
            };
            log!(self, "dev{d} pending commit seq {}: {}", pending.seq, if landed { "landed, adopted" } else { "dropped" });
            if landed {
                let dev = &mut self.devices[d];
                dev.base = pending_base;
                // `sync.rs` records an adopted base without its head.
                dev.base_head = None;
            }
        }
        let dev = &self.devices[d];
        let remote = match head {
            // Nothing new on the server: the base *is* the verified remote tree.
            Some(h) if dev.base_head == Some(h) => dev.base.iter().map(|(p, b)| (p.clone(), b.node.clone())).collect(),
            Some(_) => self.server.head_tree(),
            None => Tree::new(),
        };
        let (base, base_head) = (dev.base.clone(), dev.base_head);
        let head_tree = self.server.head_tree();
        let round = self.devices[d].round.as_mut().unwrap();
        round.head = head;
        round.head_tree = head_tree;
        round.base = base;
        round.base_head = base_head;
        round.remote = remote;
        round.step = Step::Scan;
        Ended::Running
    }

    /// Plan, read and upload, prefetch: `sync_round` up to the commit.
    fn plan(&mut self, d: usize) -> Result<Ended, String> {
        let mut round = self.devices[d].round.take().unwrap();
        let offline = self.devices[d].partitioned;
        let outcome = plan_round(
            &mut round,
            &self.devices[d].folder,
            &self.devices[d].id,
            &mut self.server,
            &mut self.rng,
            self.clock,
            offline,
        );
        let invariant = match outcome {
            Err(PlanError::Invariant(e)) => Some(e),
            Err(PlanError::Round(why)) => return Ok(self.fail_round(d, &why)),
            Ok(()) => None,
        };
        log!(
            self,
            "dev{d} plans on head {:?}: tree {:?} actions {:?}",
            round.head.map(|h| h.seq),
            round.new_tree.iter().map(|(p, n)| if n.is_dir { format!("{p}/") } else { p.clone() }).collect::<Vec<_>>(),
            round.actions.iter().map(short).collect::<Vec<_>>()
        );
        if let Some(e) = invariant {
            return Err(e);
        }
        well_formed(round.new_tree.iter().map(|(p, n)| (p, n.is_dir))).map_err(|e| format!("malformed plan: {e}"))?;
        round.step = Step::Commit;
        self.devices[d].round = Some(round);
        Ok(Ended::Running)
    }

    fn commit(&mut self, d: usize) -> Ended {
        let round = self.devices[d].round.as_mut().unwrap();
        // The base the pending record leads to, as the engine derives it.
        let mut pending = round.base.clone();
        for (path, entry) in merge::pending_changes(&round.base, &round.new_tree, &round.new_base, &round.actions) {
            match entry {
                Some(e) => pending.insert(path.to_owned(), e.into_owned()),
                None => pending.remove(path),
            };
        }
        let tree = sealed(&round.new_tree);
        if round.head.is_some() && tree == round.head_tree {
            round.committed = round.head;
            round.step = Step::Apply;
            log!(self, "dev{d} nothing to commit");
            return Ended::Running;
        }
        let seq = round.head.map_or(0, |h| h.seq + 1);
        let prev = round.head.map_or(GENESIS_PREV, |h| h.id);
        let round_id = round.id;
        let n = self.fresh_id();
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_le_bytes());
        let id = ObjectId(id);
        // The pending commit is recorded before the request is sent.
        self.devices[d].pending = Some((Head { seq, id }, pending));
        if self.devices[d].partitioned {
            return self.fail_round(d, "offline at commit");
        }
        let round = self.devices[d].round.as_mut().unwrap();
        round.sent = Some(Head { seq, id });
        round.step = Step::Await;
        log!(self, "dev{d} sends commit seq {seq} (r{n})");
        self.net.push(Msg::Commit { from: d, round: round_id, seq, prev, id, tree });
        Ended::Running
    }

    fn reply(&mut self, d: usize, round_id: u64, accepted: bool) -> Ended {
        let Some(round) = self.devices[d].round.as_mut() else { return Ended::Running };
        if round.id != round_id || round.step != Step::Await {
            return Ended::Running;
        }
        if accepted {
            round.committed = round.sent;
            round.step = Step::Apply;
            log!(self, "dev{d} commit accepted");
            Ended::Running
        } else {
            log!(self, "dev{d} head moved; merging again");
            self.counts.head_moved += 1;
            self.devices[d].round = None;
            Ended::HeadMoved
        }
    }

    fn apply_one(&mut self, d: usize) -> Ended {
        let round = self.devices[d].round.as_mut().unwrap();
        if round.next_action == 0 {
            merge::order(&mut round.actions);
        }
        let Some(action) = round.actions.get(round.next_action).cloned() else {
            round.step = Step::Save;
            return Ended::Running;
        };
        round.next_action += 1;
        match self.apply_action(d, &action) {
            Ok(()) => Ended::Running,
            Err(e) => self.fail_round(d, &format!("apply {}: {e}", short(&action))),
        }
    }

    fn check_ancestors(&self, d: usize, path: &str) -> Result<(), String> {
        for a in ancestors(path) {
            if self.devices[d].folder.get(a).is_some_and(|n| !n.dir) {
                return Err(format!("{a} is not a folder"));
            }
        }
        Ok(())
    }

    fn file_stat(&self, d: usize, path: &str) -> Option<Stat> {
        self.devices[d].folder.get(path).filter(|n| !n.dir).map(|n| n.stat)
    }

    /// `sync.rs`'s `apply`, one action, on the simulated folder.
    fn apply_action(&mut self, d: usize, action: &Action) -> Result<(), String> {
        match action {
            Action::RenameAside { from, to, expect } => {
                self.check_ancestors(d, to)?;
                if self.file_stat(d, from) == Some(*expect) && !self.devices[d].folder.contains_key(to) {
                    let old = self.devices[d].folder.remove(from).unwrap();
                    let node = Node { stat: self.stat(old.stat.size, old.mtime_ns, Some(old.stat.ino)), ..old };
                    log!(self, "dev{d} moves {from} aside to {to}");
                    self.put(d, to, node);
                }
            }
            Action::MakeDir { path, mode } => {
                self.check_ancestors(d, path)?;
                for p in ancestors(path).into_iter().chain(std::iter::once(path.as_str())) {
                    match self.devices[d].folder.get(p) {
                        Some(n) if n.dir => {}
                        Some(_) => return Err(format!("{p} exists and is not a folder")),
                        None => {
                            let n = self.dir(if p == path { (*mode).max(0o700) } else { 0o755 });
                            self.put(d, p, n);
                        }
                    }
                }
            }
            Action::Download { path, node, expect } => {
                self.check_ancestors(d, path)?;
                let round = self.devices[d].round.as_mut().unwrap();
                if round.fetched.remove(path).is_none() {
                    return Ok(());
                }
                let unchanged = match expect {
                    Some(stat) => self.file_stat(d, path) == Some(*stat),
                    None => !self.devices[d].folder.contains_key(path),
                };
                if !unchanged {
                    log!(self, "dev{d} leaves {path}: changed locally during sync");
                    return Ok(());
                }
                for a in ancestors(path) {
                    if !self.devices[d].folder.contains_key(a) {
                        let n = self.dir(0o755);
                        self.put(d, a, n);
                    }
                }
                let content = self.server.content(node);
                let stat = self.stat(node.size, node.mtime_ns, None);
                let file = Node { dir: false, content, mode: node.mode, mtime_ns: node.mtime_ns, stat };
                log!(self, "dev{d} downloads {path} = c{content}");
                self.put(d, path, file);
                let trusted = merge::trusted_stat(stat, self.clock);
                let round = self.devices[d].round.as_mut().unwrap();
                round.new_base.insert(path.clone(), BaseEntry { node: node.clone(), stat: trusted });
            }
            Action::DeleteFile { path, expect } => {
                if self.file_stat(d, path) == Some(*expect) {
                    log!(self, "dev{d} deletes {path}");
                    self.devices[d].folder.remove(path);
                } else {
                    log!(self, "dev{d} keeps {path}: deleted elsewhere but changed here");
                }
            }
            Action::DeleteDir { path } => {
                let folder = &self.devices[d].folder;
                let empty = folder.get(path).is_some_and(|n| n.dir) && !folder.keys().any(|p| is_under(p, path));
                if empty {
                    log!(self, "dev{d} removes folder {path}");
                    self.devices[d].folder.remove(path);
                }
            }
        }
        Ok(())
    }

    fn save(&mut self, d: usize) -> Ended {
        let dev = &mut self.devices[d];
        let mut round = dev.round.take().unwrap();
        let mirrors = merge::finish_base(&round.base, &round.new_tree, &mut round.new_base);
        let recorded = round.committed.filter(|_| mirrors);
        if round.new_base != round.base || recorded != round.base_head {
            dev.base = round.new_base;
            dev.base_head = recorded;
            dev.pending = None;
        }
        log!(self, "dev{d} round done at head {:?}", round.committed.map(|h| h.seq));
        Ended::Done
    }

    // ---- Network -----------------------------------------------------

    /// Delivers one message from the network, in any order; `faults`
    /// allows duplicating a request and losing a reply.
    fn deliver(&mut self, i: usize, faults: bool) -> Result<Ended, String> {
        let msg = self.net.swap_remove(i);
        match msg {
            Msg::Commit { from, round, seq, prev, id, ref tree } => {
                if faults && self.rng.chance(15) {
                    log!(self, "network duplicates dev{from}'s commit seq {seq}");
                    self.net.push(msg.clone());
                }
                let accepted = match self.server.history.last() {
                    None => seq == 0,
                    Some(h) => seq == h.seq + 1 && prev == h.id,
                };
                if accepted {
                    self.accept(from, seq, id, tree)?;
                } else {
                    if self.server.history.iter().any(|r| r.id == id) {
                        self.counts.duplicates_refused += 1;
                    }
                    log!(self, "server refuses dev{from}'s commit seq {seq}: head moved");
                }
                if self.devices[from].partitioned || (faults && self.rng.chance(10)) {
                    log!(self, "network loses the reply to dev{from}");
                } else {
                    self.net.push(Msg::Reply { to: from, round, accepted });
                }
                Ok(Ended::Running)
            }
            Msg::Reply { to, round, accepted } => {
                if self.devices[to].partitioned {
                    return Ok(Ended::Running);
                }
                Ok(self.reply(to, round, accepted))
            }
        }
    }

    fn accept(&mut self, from: usize, seq: u64, id: ObjectId, tree: &Tree) -> Result<(), String> {
        if self.server.history.iter().any(|r| r.id == id) {
            return Err(format!("revision r{} of dev{from} landed twice", u64::from_le_bytes(id.0[..8].try_into().unwrap())));
        }
        well_formed(tree.iter().map(|(p, n)| (p, n.is_dir))).map_err(|e| format!("dev{from} committed a malformed tree: {e}"))?;
        // No deletion (or overwrite) a device did not see.
        // A version moved to a conflict copy is kept.
        let prev = self.server.head_tree();
        let targets: HashSet<BlobRef> = tree.values().filter(|n| !n.is_dir).map(|n| n.target).collect();
        for (p, node) in prev.iter().filter(|(_, n)| !n.is_dir) {
            let kept = targets.contains(&node.target);
            let content = self.server.content(node);
            if !kept && !self.devices[from].held.contains(&(p.clone(), content)) {
                let now = match tree.get(p) {
                    None => "deletes it".to_owned(),
                    Some(n) if n.is_dir => "replaces it by a folder".to_owned(),
                    Some(n) => format!("replaces it by c{}", self.server.content(n)),
                };
                return Err(format!(
                    "dev{from}'s commit seq {seq} {now}: {p} = c{content}, a version dev{from} never had at {p}"
                ));
            }
        }
        self.counts.commits += 1;
        if self.log.is_some() {
            let show = |n: Option<&RemoteNode>| match n {
                None => "-".to_owned(),
                Some(n) if n.is_dir => "folder".to_owned(),
                Some(n) => format!(
                    "c{} {:o} v{}",
                    self.server.content(n),
                    n.mode,
                    self.server.blobs.get(&n.target.id).map_or(0, |m| m.meta.version)
                ),
            };
            let changes: Vec<String> = prev
                .keys()
                .chain(tree.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|p| prev.get(*p) != tree.get(*p))
                .map(|p| format!("{p}: {} -> {}", show(prev.get(p)), show(tree.get(p))))
                .collect();
            log!(self, "server accepts dev{from}'s commit seq {seq}: {}", changes.join(", "));
        }
        self.server.history.push(Revision { seq, id, tree: tree.clone() });
        Ok(())
    }

    // ---- Schedule ----------------------------------------------------

    fn event(&mut self) -> Result<(), String> {
        self.event += 1;
        self.counts.events += 1;
        self.clock += self.rng.below(800) as i64 * 1_000_000;
        let n = self.devices.len();
        let d = self.rng.below(n);
        match self.rng.below(100) {
            0..=29 => self.user_edit(d),
            30..=74 => {
                if self.devices[d].round.is_some() || self.rng.chance(40) {
                    self.step(d)?;
                }
            }
            75..=77 => {
                if self.devices[d].round.is_some() {
                    log!(self, "dev{d} crashes");
                    self.counts.crashes += 1;
                    self.devices[d].round = None;
                }
            }
            78..=80 => {
                let dev = &mut self.devices[d];
                dev.partitioned = !dev.partitioned;
                let now = if dev.partitioned { "cut off" } else { "reconnected" };
                log!(self, "dev{d} {now}");
            }
            81..=94 => {
                if !self.net.is_empty() {
                    let i = self.rng.below(self.net.len());
                    self.deliver(i, true)?;
                }
            }
            95..=96 => {
                if !self.net.is_empty() {
                    let i = self.rng.below(self.net.len());
                    log!(self, "network drops a message");
                    self.net.swap_remove(i);
                }
            }
            _ => {
                if self.devices[d].round.as_ref().is_some_and(|r| r.step == Step::Await) {
                    self.fail_round(d, "commit timed out");
                }
            }
        }
        self.check_now()
    }

    /// One whole `keyhold sync` on a reliable network: rounds until one
    /// completes (a lost compare-and-swap starts another).
    fn sync(&mut self, d: usize) -> Result<Ended, String> {
        for _ in 0..MAX_ROUNDS {
            loop {
                self.event += 1;
                let ended = match self.devices[d].round.as_ref().map(|r| r.step) {
                    Some(Step::Await) => {
                        let i = self.net.iter().position(|m| matches!(m, Msg::Commit { from, .. } if *from == d));
                        match i {
                            Some(i) => self.deliver(i, false)?,
                            None => {
                                let i = self.net.iter().position(|m| matches!(m, Msg::Reply { to, .. } if *to == d));
                                match i {
                                    Some(i) => self.deliver(i, false)?,
                                    None => self.fail_round(d, "commit timed out"),
                                }
                            }
                        }
                    }
                    _ => self.step(d)?,
                };
                self.check_now()?;
                match ended {
                    Ended::Running => {}
                    Ended::HeadMoved => break,
                    done => return Ok(done),
                }
            }
        }
        Ok(Ended::Failed)
    }

    fn state(&self) -> impl PartialEq + use<> {
        let devices: Vec<(Folder, Base, Option<Head>)> =
            self.devices.iter().map(|d| (d.folder.clone(), d.base.clone(), d.base_head)).collect();
        (self.server.head(), devices)
    }

    /// Heals the network, lets every message arrive, then has every device
    /// sync until a whole pass changes nothing.
    fn quiesce(&mut self) -> Result<(), String> {
        log!(self, "-- quiescence: network healed, every device syncs until nothing changes");
        for dev in &mut self.devices {
            dev.partitioned = false;
        }
        while !self.net.is_empty() {
            let i = self.rng.below(self.net.len());
            self.event += 1;
            self.deliver(i, false)?;
        }
        // Rounds in flight finish first: they scanned before the last edits.
        for d in 0..self.devices.len() {
            if self.devices[d].round.is_some() {
                self.sync(d)?;
            }
        }
        for pass in 0..MAX_QUIET_PASSES {
            let before = self.state();
            let mut failed = Vec::new();
            for d in 0..self.devices.len() {
                self.clock += 2 * SECOND;
                if self.sync(d)? != Ended::Done {
                    failed.push(d);
                }
            }
            if failed.is_empty() && self.state() == before {
                return Ok(());
            }
            if pass + 1 == MAX_QUIET_PASSES {
                return Err(format!("no quiet state after {MAX_QUIET_PASSES} passes (devices failing: {failed:?})"));
            }
        }
        Ok(())
    }

    /// After every event: folders are trees, and every content a user
    /// wrote is somewhere (a folder, the head tree) unless a user removed it.
    fn check_now(&self) -> Result<(), String> {
        let mut present: HashSet<u64> = HashSet::new();
        for (d, dev) in self.devices.iter().enumerate() {
            well_formed(dev.folder.iter().map(|(p, n)| (p, n.dir))).map_err(|e| format!("dev{d}'s folder: {e}"))?;
            present.extend(dev.folder.values().filter(|n| !n.dir).map(|n| n.content));
        }
        if let Some(head) = self.server.history.last() {
            present.extend(head.tree.values().filter(|n| !n.is_dir).map(|n| self.server.content(n)));
        }
        match self.written.iter().find(|(c, _)| !present.contains(c) && !self.user_removed.contains(c)) {
            Some((c, origin)) => Err(format!("lost edit: c{c} ({origin}) is gone, and no user overwrote or deleted it")),
            None => Ok(()),
        }
    }

    fn check_end(&mut self) -> Result<(), String> {
        let tree = self.server.head_tree();
        let expected: BTreeMap<String, Option<(u64, u32)>> =
            tree.iter().map(|(p, n)| (p.clone(), (!n.is_dir).then(|| (self.server.content(n), n.mode)))).collect();
        for (d, dev) in self.devices.iter().enumerate() {
            let has: BTreeMap<String, Option<(u64, u32)>> =
                dev.folder.iter().map(|(p, n)| (p.clone(), (!n.dir).then_some((n.content, n.mode)))).collect();
            if has != expected {
                let diff: Vec<String> = expected
                    .keys()
                    .chain(has.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|p| expected.get(*p) != has.get(*p))
                    .map(|p| format!("{p}: head {:?}, dev{d} {:?}", expected.get(p), has.get(p)))
                    .collect();
                return Err(format!("no convergence: dev{d} differs from the head: {}", diff.join("; ")));
            }
        }
        let kept: HashSet<u64> = expected.values().flatten().map(|(c, _)| *c).collect();
        for (c, origin) in &self.written {
            if !kept.contains(c) && !self.user_removed.contains(c) {
                return Err(format!("lost edit: c{c} ({origin}) is gone, and no user overwrote or deleted it"));
            }
        }
        self.counts.conflicts = tree.keys().filter(|p| p.contains("(conflict ")).count() as u64;
        Ok(())
    }
}

enum PlanError {
    /// The round stops (offline, a file vanished while read).
    Round(String),
    /// A broken invariant.
    Invariant(String),
}

fn scan(folder: &Folder) -> Local {
    folder
        .iter()
        .map(|(p, n)| (p.clone(), LocalNode { is_dir: n.dir, mode: n.mode, mtime_ns: n.mtime_ns, stat: n.stat }))
        .collect()
}

fn short(a: &Action) -> String {
    match a {
        Action::MakeDir { path, .. } => format!("mkdir {path}"),
        Action::Download { path, expect, .. } => format!("download {path}{}", if expect.is_some() { " over" } else { "" }),
        Action::RenameAside { from, to, .. } => format!("aside {from} -> {to}"),
        Action::DeleteFile { path, .. } => format!("rm {path}"),
        Action::DeleteDir { path } => format!("rmdir {path}"),
    }
}

/// Reads a file as the encryptor does: `None` if it changed since the scan.
fn read(folder: &Folder, path: &str, scanned: &LocalNode) -> Result<Option<u64>, PlanError> {
    match folder.get(path) {
        Some(n) if !n.dir => Ok((n.stat == scanned.stat).then_some(n.content)),
        _ => Err(PlanError::Round(format!("{path} vanished while read"))),
    }
}

/// `sync_round` from the plan to the prefetch, with `merge` deciding.
fn plan_round(
    round: &mut Round,
    folder: &Folder,
    device: &str,
    server: &mut Server,
    rng: &mut Rng,
    now: i64,
    offline: bool,
) -> Result<(), PlanError> {
    let mut plan = merge::plan(Sides { base: &round.base, local: &round.local, remote: &round.remote }, device, now);
    let to_upload = plan.to_upload.clone();
    let both_files = plan.both_files.clone();
    if offline && !(to_upload.is_empty() && both_files.is_empty()) {
        return Err(PlanError::Round("offline at upload".into()));
    }
    // `identities`: the version each written path replaces, remote first.
    let previous = |p: &str| -> Option<(Manifest, RemoteNode)> {
        let node = round
            .remote
            .get(p)
            .filter(|r| !r.is_dir)
            .or_else(|| round.base.get(p).filter(|b| !b.node.is_dir).map(|b| &b.node))?;
        Some((server.blobs.get(&node.target.id)?.clone(), node.clone()))
    };
    let manifest = |rng: &mut Rng, p: &str, prev: Option<&(Manifest, RemoteNode)>, l: &LocalNode, content: u64| {
        let (file_id, version) = prev.map_or_else(
            || {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&rng.next().to_le_bytes());
                (FileId(id), 1)
            },
            |(m, _)| (m.meta.file_id, m.meta.version + 1),
        );
        let (size, chunks) = chunks_of(content);
        let meta = FileMeta { file_id, version, name: name_of(p).to_owned(), mode: l.mode, mtime_ns: l.mtime_ns };
        Manifest { meta, size, chunks }
    };
    let mut uploads: Vec<Manifest> = Vec::new();
    for p in &to_upload {
        let source = plan.source(p).to_owned();
        let Some(l) = round.local.get(&source) else { continue };
        let prev = previous(p);
        match read(folder, &source, l)? {
            Some(content) => {
                let m = manifest(rng, p, prev.as_ref(), l, content);
                plan.upload_read(p, l, &m, prev.as_ref().map(|(m, n)| (m, n)), now, || {
                    uploads.push(m.clone());
                    Ok::<_, ()>(BlobRef { epoch: 0, id: blob_id(&m) })
                })
            }
            None => {
                plan.upload_changed(p);
                Ok(())
            }
        }
        .map_err(|()| PlanError::Round("upload".into()))?;
    }
    for p in &both_files {
        let (Some(l), Some(r)) = (round.local.get(p), round.remote.get(p)) else { continue };
        let prev = previous(p);
        match read(folder, p, l)? {
            Some(content) => {
                let m = manifest(rng, p, prev.as_ref(), l, content);
                let remote_manifest = server.blobs.get(&r.target.id);
                let base_manifest =
                    round.base.get(p).filter(|b| !b.node.is_dir).and_then(|b| server.blobs.get(&b.node.target.id));
                plan.both_read(p, l, r, &m, remote_manifest, base_manifest, now, || {
                    uploads.push(m.clone());
                    Ok::<_, ()>(BlobRef { epoch: 0, id: blob_id(&m) })
                })
            }
            None => {
                plan.both_changed(p, r);
                Ok(())
            }
        }
        .map_err(|()| PlanError::Round("upload".into()))?;
    }
    plan.add_parents();
    let merge::Plan { new_tree, new_base, actions, .. } = plan;
    for m in uploads {
        server.blobs.insert(blob_id(&m), m);
    }
    let mut fetched = HashMap::new();
    let mut twice = None;
    for a in &actions {
        if let Action::Download { path, node, .. } = a {
            if fetched.insert(path.clone(), node.clone()).is_some() {
                twice = Some(path.clone());
            }
        }
    }
    if offline && !fetched.is_empty() {
        return Err(PlanError::Round("offline at download".into()));
    }
    round.new_tree = new_tree;
    round.new_base = new_base;
    round.actions = actions;
    round.fetched = fetched;
    match twice {
        Some(path) => Err(PlanError::Invariant(format!("two downloads to {path}"))),
        None => Ok(()),
    }
}

struct Outcome {
    result: Result<(), String>,
    counts: Counts,
    log: Vec<String>,
}

/// Runs one seed: its schedule (cut to `events` if given), quiescence, and
/// the final checks.
fn run(seed: u64, events: Option<u64>, log: bool) -> Outcome {
    let mut setup = Rng(seed ^ 0x5eed_5eed_5eed_5eed);
    let devices = 2 + setup.below(3);
    let planned = 40 + setup.below(360) as u64;
    let events = events.map_or(planned, |e| e.min(planned));
    let mut sim = Sim::new(seed, devices, log);
    log!(sim, "seed {seed}: {devices} devices, {events} events");
    let mut result = Ok(());
    for _ in 0..events {
        result = sim.event();
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = sim.quiesce().and_then(|()| sim.check_end());
    }
    Outcome { result, counts: sim.counts, log: sim.log.unwrap_or_default() }
}

/// The shortest schedule of `seed` that still fails.
fn shrink(seed: u64) -> u64 {
    (0..).find(|&n| run(seed, Some(n), false).result.is_err()).unwrap_or(0)
}

fn report(seed: u64, error: &str) -> String {
    let events = shrink(seed);
    let outcome = run(seed, Some(events), true);
    format!(
        "simulation seed {seed} failed: {error}\n\
         shortest failing schedule: {events} events; replay with\n    \
         KEYHOLD_SIM_SEED={seed} KEYHOLD_SIM_EVENTS={events} cargo test -p keyhold-client --test simulation -- --nocapture\n\
         failure there: {:?}\nevent log:\n{}",
        outcome.result,
        outcome.log.join("\n")
    )
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn f5_seeded_simulation() {
    if let Some(seed) = env("KEYHOLD_SIM_SEED") {
        let outcome = run(seed, env("KEYHOLD_SIM_EVENTS"), true);
        println!("{}", outcome.log.join("\n"));
        println!("{:?}", outcome.counts);
        if let Err(e) = outcome.result {
            panic!("{}", report(seed, &e));
        }
        return;
    }
    let count = env("KEYHOLD_SIM_SEEDS").unwrap_or(300);
    let start = env("KEYHOLD_SIM_START").unwrap_or(0);
    // Prints every failing seed, not only the first.
    let list = std::env::var_os("KEYHOLD_SIM_LIST").is_some();
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get) as u64;
    let started = std::time::Instant::now();
    let next = std::sync::atomic::AtomicU64::new(start);
    let results: Vec<(Counts, Option<(u64, String)>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut total = Counts::default();
                    let mut first_failure: Option<(u64, String)> = None;
                    loop {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= start + count {
                            break;
                        }
                        let outcome = run(seed, None, false);
                        add(&mut total, &outcome.counts);
                        if let Err(e) = outcome.result {
                            if list {
                                println!("seed {seed}: {e}");
                            }
                            if first_failure.as_ref().is_none_or(|(s, _)| seed < *s) {
                                first_failure = Some((seed, e));
                            }
                        }
                    }
                    (total, first_failure)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut total = Counts::default();
    let mut failure: Option<(u64, String)> = None;
    for (counts, f) in results {
        add(&mut total, &counts);
        if let Some((seed, e)) = f {
            if failure.as_ref().is_none_or(|(s, _)| seed < *s) {
                failure = Some((seed, e));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{count} seeds from {start} in {secs:.1} s ({:.0} seeds/s): {total:?}", count as f64 / secs);
    if let Some((seed, e)) = failure {
        panic!("{}", report(seed, &e));
    }
}

/// Seeds that failed before the fix of the bug named, each cut to its
/// shortest failing schedule; replayed on every run.
const REGRESSIONS: [(u64, u64, &str); 6] = [
    (321, 8, "an unchanged file replaced by a folder elsewhere: every sync failed, \"not a folder\""),
    (1163, 33, "an unchanged folder replaced by a file elsewhere: the file never arrived, the folder came back"),
    (1163, 35, "a folder replaced by a file here while a file was added in it elsewhere: a file above files"),
    (1184, 40, "crash after commit: the adopted base taken as the head's tree deleted a file never downloaded"),
    (1480, 50, "a download left alone (file changed meanwhile) entered the base; the remote version was overwritten"),
    (658, 112, "equal content, different modes: an untouched file kept its mode, and devices flipped it forever"),
];

#[test]
fn f5_regression_seeds() {
    for (seed, events, bug) in REGRESSIONS {
        if let Err(e) = run(seed, Some(events), false).result {
            panic!("regression ({bug}):\n{}", report(seed, &e));
        }
    }
}

fn add(total: &mut Counts, c: &Counts) {
    total.events += c.events;
    total.rounds += c.rounds;
    total.commits += c.commits;
    total.head_moved += c.head_moved;
    total.duplicates_refused += c.duplicates_refused;
    total.crashes += c.crashes;
    total.failed_rounds += c.failed_rounds;
    total.conflicts += c.conflicts;
}
