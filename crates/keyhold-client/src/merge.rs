//! The merge decision of a sync round (`docs/spec/protocol.md`, "Sync",
//! step 3): for every path of the base, the local folder and the remote
//! tree, which side wins, what the folder must do, what to upload, and what
//! the new tree and base are.
//!
//! Pure: no I/O, no async, no keys, no clock (callers pass the time). The
//! sync engine (`sync.rs`) feeds it the real folder and the verified head;
//! `tests/simulation.rs` feeds it simulated devices under seeded faults
//! (SECURITY F5). Both run exactly this code.
//!
//! A plan is made in three steps, because content is only known once the
//! engine has read the files the first step picks:
//! 1. [`plan`]: decide from stats and remote targets alone.
//! 2. For each path of [`Plan::to_upload`], [`Plan::upload_read`] (or
//!    [`Plan::upload_changed`] if the file changed while read); for each of
//!    [`Plan::both_files`], [`Plan::both_read`] (or [`Plan::both_changed`]).
//! 3. [`Plan::add_parents`].
//!
//! Then [`pending_changes`] gives the changes to the base to record before
//! the commit is sent, and [`finish_base`] the base to save after the local changes.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use keyhold_core::{BlobId, BlobRef, Manifest};

use crate::client::{RemoteNode, Tree};
use crate::state::{BaseEntry, Stat};

/// A base tree: the tree this device last agreed on, with local stats.
pub type Base = BTreeMap<String, BaseEntry>;

/// The local folder as scanned, by path.
pub type Local = BTreeMap<String, LocalNode>;

/// A file or folder found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Folder or file.
    pub is_dir: bool,
    /// Mode bits.
    pub mode: u32,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// The stat every later change to this path is guarded by.
    pub stat: Stat,
}

/// A change to the local folder, made after the commit, each guarded by
/// what the scan saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a folder (and its missing parents).
    MakeDir {
        /// Where.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Put a verified download in place, only over what the scan saw
    /// (`expect`; `None`: nothing at all).
    Download {
        /// Where.
        path: String,
        /// The version.
        node: RemoteNode,
        /// The stat the path must still have.
        expect: Option<Stat>,
    },
    /// Move a local file aside to a conflict copy, only if unchanged and
    /// `to` is free.
    RenameAside {
        /// The file.
        from: String,
        /// The conflict copy.
        to: String,
        /// The stat `from` must still have.
        expect: Stat,
    },
    /// Delete a file deleted elsewhere, only if unchanged.
    DeleteFile {
        /// The file.
        path: String,
        /// The stat it must still have.
        expect: Stat,
    },
    /// Remove a folder deleted elsewhere, only if empty.
    DeleteDir {
        /// The folder.
        path: String,
    },
}

impl Action {
    /// The paths of the folder this action changes.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Action::MakeDir { path, .. }
            | Action::Download { path, .. }
            | Action::DeleteFile { path, .. }
            | Action::DeleteDir { path } => vec![path.as_str()],
            Action::RenameAside { from, to, .. } => vec![from.as_str(), to.as_str()],
        }
    }
}

/// Sorts actions into the order they are applied in: files moved aside;
/// then what stands where something of the other kind arrives (a file
/// where a folder is made, a folder, and what is in it, where a file is
/// downloaded); folders, parents first; downloads; file deletions; and
/// folders, children first. Stable: equal ranks keep the plan's order.
pub fn order(actions: &mut [Action]) {
    let depth = |p: &str| p.matches('/').count();
    let mut made: HashSet<String> = HashSet::new();
    let mut files: HashSet<String> = HashSet::new();
    for a in actions.iter() {
        match a {
            Action::MakeDir { path, .. } => {
                made.insert(path.clone());
            }
            Action::Download { path, .. } => {
                made.insert(path.clone());
                files.insert(path.clone());
            }
            Action::RenameAside { .. } | Action::DeleteFile { .. } | Action::DeleteDir { .. } => {}
        }
    }
    let in_the_way =
        |p: &str| made.contains(p) || p.match_indices('/').any(|(i, _)| p.get(..i).is_some_and(|a| files.contains(a)));
    actions.sort_by_key(|a| match a {
        Action::RenameAside { .. } => 0,
        Action::DeleteFile { path, .. } if in_the_way(path) => 1,
        Action::DeleteDir { path } if in_the_way(path) => 1_000 - depth(path),
        Action::MakeDir { path, .. } => 2_000 + depth(path),
        Action::Download { .. } => 10_000,
        Action::DeleteFile { .. } => 20_000,
        Action::DeleteDir { path } => 40_000 - depth(path),
    });
}

/// Whether a local file is unchanged since the base recorded it. Stats of
/// files changed within a second of being recorded are not kept at all
/// (see [`trusted_stat`]), so equality here is safe.
pub fn unchanged(base: &BaseEntry, local: &LocalNode) -> bool {
    base.stat == Some(local.stat) && base.node.mode == local.mode
}

/// A stat worth recording at time `now_ns`: one whose change time lies
/// safely in the past. A file changed within the timestamp's resolution of
/// the record could change again without its stat moving ("racily clean",
/// as in git). The change time is used, not the modification time, because
/// it always comes from this machine's clock, whatever clock set the mtime.
pub fn trusted_stat(stat: Stat, now_ns: i64) -> Option<Stat> {
    (stat.ctime_ns < now_ns.saturating_sub(1_000_000_000)).then_some(stat)
}

/// A folder of the tree being built; its listing is sealed later.
pub fn folder_node(mode: u32, mtime_ns: i64) -> RemoteNode {
    RemoteNode { is_dir: true, size: 0, mtime_ns, mode, target: BlobRef { epoch: 0, id: BlobId([0; 32]) } }
}

fn dir_node(l: &LocalNode) -> RemoteNode {
    folder_node(l.mode, l.mtime_ns)
}

/// A new version of a local file: its manifest's blob is `target`.
fn file_node(l: &LocalNode, size: u64, target: BlobRef) -> RemoteNode {
    RemoteNode { is_dir: false, size, mtime_ns: l.mtime_ns, mode: l.mode, target }
}

/// A free name for a conflict copy of `path` made by `device` at `now_ns`.
pub fn conflict_name(path: &str, device: &str, now_ns: i64, taken: &dyn Fn(&str) -> bool) -> String {
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    let secs = now_ns / 1_000_000_000;
    let short = device.get(..8).unwrap_or(device);
    for n in 0u32.. {
        let suffix = if n == 0 { String::new() } else { format!(" {n}") };
        let candidate = format!("{stem} (conflict {short} {secs}{suffix}){ext}");
        let full = if dir.is_empty() { candidate } else { format!("{dir}/{candidate}") };
        if !taken(&full) {
            return full;
        }
    }
    unreachable!("u32 conflict suffixes exhausted")
}

/// Whether `new` is the version `previous` already is (a file touched but
/// not changed keeps its version).
pub fn same_version(previous: &Manifest, new: &Manifest) -> bool {
    previous.chunks == new.chunks
        && previous.meta.mode == new.meta.mode
        && previous.meta.mtime_ns == new.meta.mtime_ns
        && previous.meta.name == new.meta.name
}

/// The three sides of a merge.
#[derive(Debug, Clone, Copy)]
pub struct Sides<'a> {
    /// The tree this device last agreed on.
    pub base: &'a Base,
    /// The folder as scanned.
    pub local: &'a Local,
    /// The tree at the verified head.
    pub remote: &'a Tree,
}

/// What a plan tells the user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notes {
    /// Files uploaded (new or changed).
    pub uploaded: Vec<String>,
    /// Paths whose deletion is propagated to the server.
    pub deleted_remotely: Vec<String>,
    /// Conflict copies created.
    pub conflicts: Vec<String>,
    /// Paths left alone, and why.
    pub skipped: Vec<(String, String)>,
}

/// The outcome of a merge: the tree to commit, the base it leads to, and
/// what to do to the folder.
#[derive(Debug)]
pub struct Plan<'a> {
    sides: Sides<'a>,
    device: &'a str,
    /// Conflict copies (`to` → `from`) of files moved aside for a folder.
    renamed_from: HashMap<String, String>,
    /// The merged tree.
    pub new_tree: Tree,
    /// The base, so far: paths whose local state is known to match.
    pub new_base: Base,
    /// Local changes.
    pub actions: Vec<Action>,
    /// Local files (or conflict copies) to read and upload.
    pub to_upload: Vec<String>,
    /// Files changed on both sides: resolved by content.
    pub both_files: Vec<String>,
    /// For the report.
    pub notes: Notes,
}

/// Decides every path from stats and remote targets ("changed locally"
/// against the base, "changed remotely" against the base). `device` and
/// `now_ns` name conflict copies.
pub fn plan<'a>(sides: Sides<'a>, device: &'a str, now_ns: i64) -> Plan<'a> {
    let Sides { base, local, remote } = sides;
    let mut plan = Plan {
        sides,
        device,
        renamed_from: HashMap::new(),
        new_tree: Tree::new(),
        new_base: Base::new(),
        actions: Vec::new(),
        to_upload: Vec::new(),
        both_files: Vec::new(),
        notes: Notes::default(),
    };
    // The three maps are sorted by path: one merge-join pass visits every
    // path once, where a lookup per path per side cost a tenth of an
    // unchanged 20,000-file sync in string comparisons.
    let (mut bases, mut locals, mut remotes) = (base.iter().peekable(), local.iter().peekable(), remote.iter().peekable());
    loop {
        let next =
            [bases.peek().map(|e| e.0), locals.peek().map(|e| e.0), remotes.peek().map(|e| e.0)].into_iter().flatten().min();
        let Some(p) = next else { break };
        let b = bases.next_if(|e| e.0 == p).map(|e| e.1);
        let l = locals.next_if(|e| e.0 == p).map(|e| e.1);
        let r = remotes.next_if(|e| e.0 == p).map(|e| e.1);
        let local_changed = match (b, l) {
            (None, None) => false,
            (Some(b), Some(l)) if b.node.is_dir || l.is_dir => b.node.is_dir != l.is_dir,
            (Some(b), Some(l)) => !unchanged(b, l),
            _ => true,
        };
        let remote_changed = match (b, r) {
            (None, None) => false,
            (Some(b), Some(r)) => b.node.is_dir != r.is_dir || (!r.is_dir && b.node.target != r.target),
            _ => true,
        };
        match (local_changed, remote_changed) {
            (false, false) => {
                if let Some(r) = r {
                    plan.new_tree.insert(p.clone(), r.clone());
                    if let Some(b) = b {
                        plan.new_base.insert(p.clone(), b.clone());
                    }
                }
            }
            (false, true) => plan.take_remote(p, l, r),
            (true, false) => plan.take_local(p, l),
            (true, true) => match (l, r) {
                (None, None) => {}
                // Deleted here, changed there: the change wins, the file comes back.
                (None, Some(_)) => plan.take_remote(p, None, r),
                // Changed here, deleted there: the change wins.
                (Some(_), None) => plan.take_local(p, l),
                (Some(l), Some(r)) if l.is_dir && r.is_dir => {
                    plan.new_tree.insert(p.clone(), r.clone());
                }
                (Some(l), Some(r)) if !l.is_dir && !r.is_dir => plan.both_files.push(p.clone()),
                (Some(l), Some(r)) if !l.is_dir => {
                    // A local file where a folder arrived: the file moves aside.
                    let to = conflict_name(p, device, now_ns, &|c| local.contains_key(c) || remote.contains_key(c));
                    plan.actions.push(Action::RenameAside { from: p.clone(), to: to.clone(), expect: l.stat });
                    plan.renamed_from.insert(to.clone(), p.clone());
                    plan.to_upload.push(to.clone());
                    plan.notes.conflicts.push(to);
                    plan.take_remote(p, None, Some(r));
                }
                (Some(l), Some(r)) => {
                    // A local folder where a file arrived: the file lands beside it.
                    let to = conflict_name(p, device, now_ns, &|c| local.contains_key(c) || remote.contains_key(c));
                    plan.new_tree.insert(p.clone(), dir_node(l));
                    plan.new_tree.insert(to.clone(), r.clone());
                    plan.actions.push(Action::Download { path: to.clone(), node: r.clone(), expect: None });
                    plan.notes.conflicts.push(to);
                }
            },
        }
    }
    plan.settle_kinds(now_ns);
    plan
}

impl Plan<'_> {
    fn take_local(&mut self, p: &str, l: Option<&LocalNode>) {
        match l {
            Some(l) if l.is_dir => {
                self.new_tree.insert(p.to_owned(), dir_node(l));
            }
            Some(_) => self.to_upload.push(p.to_owned()),
            None => self.notes.deleted_remotely.push(p.to_owned()),
        }
    }

    fn take_remote(&mut self, p: &str, l: Option<&LocalNode>, r: Option<&RemoteNode>) {
        match (r, l) {
            (Some(r), _) => {
                self.new_tree.insert(p.to_owned(), r.clone());
                match l {
                    Some(l) if r.is_dir && l.is_dir => {}
                    None if r.is_dir => self.actions.push(Action::MakeDir { path: p.to_owned(), mode: r.mode }),
                    // An unchanged file where a folder arrived: it goes first (`order`).
                    Some(l) if r.is_dir => {
                        self.actions.push(Action::DeleteFile { path: p.to_owned(), expect: l.stat });
                        self.actions.push(Action::MakeDir { path: p.to_owned(), mode: r.mode });
                    }
                    // An unchanged folder where a file arrived: the folder goes
                    // first, if nothing is left in it (`order`).
                    Some(l) if l.is_dir => {
                        self.actions.push(Action::DeleteDir { path: p.to_owned() });
                        self.actions.push(Action::Download { path: p.to_owned(), node: r.clone(), expect: None });
                    }
                    _ => self.actions.push(Action::Download { path: p.to_owned(), node: r.clone(), expect: l.map(|l| l.stat) }),
                }
            }
            (None, Some(l)) if l.is_dir => self.actions.push(Action::DeleteDir { path: p.to_owned() }),
            (None, Some(l)) => self.actions.push(Action::DeleteFile { path: p.to_owned(), expect: l.stat }),
            (None, None) => {}
        }
    }

    /// A file of the merged tree with anything planned below it (a folder
    /// replaced by a file on one side while the other side changed
    /// something in it): the folder stays, with what is in it, and the file
    /// becomes a conflict copy beside it. A deletion loses to a change.
    fn settle_kinds(&mut self, now_ns: i64) {
        let Sides { local, remote, .. } = self.sides;
        let files: Vec<String> = {
            // Every folder some planned path lies in, borrowed: a file is
            // in conflict with what is planned below it iff it is one.
            let mut folders: HashSet<&str> = HashSet::new();
            for p in self.new_tree.keys().chain(&self.to_upload).chain(&self.both_files) {
                let mut rest = p.as_str();
                while let Some((folder, _)) = rest.rsplit_once('/') {
                    if !folders.insert(folder) {
                        break;
                    }
                    rest = folder;
                }
            }
            let files = self.new_tree.iter().filter(|(_, n)| !n.is_dir).map(|(p, _)| p).chain(&self.to_upload);
            files.filter(|q| folders.contains(q.as_str())).cloned().collect()
        };
        if files.is_empty() {
            return;
        }
        let mut planned: BTreeSet<String> =
            self.new_tree.keys().chain(&self.to_upload).chain(&self.both_files).cloned().collect();
        for q in files {
            let upload = self.to_upload.iter().position(|p| *p == q).zip(local.get(&q));
            let arrived = self.new_tree.get(&q).filter(|n| !n.is_dir).cloned();
            if upload.is_none() && arrived.is_none() {
                continue;
            }
            let to = {
                let tree = &self.new_tree;
                let taken = &planned;
                conflict_name(&q, self.device, now_ns, &|c| {
                    local.contains_key(c) || remote.contains_key(c) || tree.contains_key(c) || taken.contains(c)
                })
            };
            planned.insert(to.clone());
            self.notes.conflicts.push(to.clone());
            if let Some((at, l)) = upload {
                // The local file moves aside and is uploaded as the copy.
                self.actions.push(Action::RenameAside { from: q.clone(), to: to.clone(), expect: l.stat });
                self.renamed_from.insert(to.clone(), q.clone());
                if let Some(slot) = self.to_upload.get_mut(at) {
                    *slot = to;
                }
                let dir = remote.get(&q).filter(|r| r.is_dir).cloned().unwrap_or_else(|| folder_node(0o755, 0));
                self.actions.push(Action::MakeDir { path: q.clone(), mode: dir.mode });
                self.new_tree.insert(q, dir);
            } else if let Some(r) = arrived {
                // The remote file lands beside the folder.
                self.actions.retain(|a| !matches!(a, Action::Download { path, .. } | Action::DeleteDir { path } if *path == q));
                self.actions.push(Action::Download { path: to.clone(), node: r.clone(), expect: None });
                self.new_tree.insert(to, r);
                let dir = match local.get(&q) {
                    Some(l) if l.is_dir => dir_node(l),
                    _ => {
                        self.actions.push(Action::MakeDir { path: q.clone(), mode: 0o755 });
                        folder_node(0o755, 0)
                    }
                };
                self.new_tree.insert(q, dir);
            }
        }
    }

    /// The local file an upload of `p` reads: `p` itself, or the file a
    /// conflict copy `p` is moved aside from.
    pub fn source<'p>(&'p self, p: &'p str) -> &'p str {
        self.renamed_from.get(p).map_or(p, String::as_str)
    }

    /// An upload of `p` read its file (`l`, as scanned) as `manifest`.
    /// `previous` is the version it replaces (remote first, then base), if
    /// any: a file touched but not changed keeps it (or, if the remote side
    /// deleted it, is deleted here). Otherwise `new_version` queues the
    /// manifest and gives its blob.
    pub fn upload_read<E>(
        &mut self,
        p: &str,
        l: &LocalNode,
        manifest: &Manifest,
        previous: Option<(&Manifest, &RemoteNode)>,
        now_ns: i64,
        new_version: impl FnOnce() -> Result<BlobRef, E>,
    ) -> Result<(), E> {
        let node = match previous.filter(|(m, _)| same_version(m, manifest)) {
            // Deleted there, and the base version here (only its stat was
            // not trusted): no change here, so the deletion wins.
            Some(_) if !self.sides.remote.contains_key(p) && !self.renamed_from.contains_key(p) => {
                self.actions.push(Action::DeleteFile { path: p.to_owned(), expect: l.stat });
                return Ok(());
            }
            Some((_, prev)) => prev.clone(),
            None => file_node(l, manifest.size, new_version()?),
        };
        if !self.renamed_from.contains_key(p) {
            self.new_base.insert(p.to_owned(), BaseEntry { node: node.clone(), stat: trusted_stat(l.stat, now_ns) });
        }
        self.new_tree.insert(p.to_owned(), node);
        self.notes.uploaded.push(p.to_owned());
        Ok(())
    }

    /// An upload of `p` found its file changed while reading it: the path
    /// stays as it was, and is synced next time.
    pub fn upload_changed(&mut self, p: &str) {
        self.notes.skipped.push((p.to_owned(), "changed while being read; will be synced next time".into()));
        if let Some(r) = self.sides.remote.get(p) {
            self.new_tree.insert(p.to_owned(), r.clone());
        }
        if let Some(b) = self.sides.base.get(p) {
            self.new_base.insert(p.to_owned(), b.clone());
        }
    }

    /// A file changed on both sides (`l` as scanned, `r` remote) read as
    /// `manifest`; `remote_manifest` and `base_manifest` are those of the
    /// remote and base versions. The base version is a plain remote change;
    /// otherwise equal content is no conflict, and otherwise the remote version
    /// keeps the name and the local one becomes a conflict copy, whose
    /// manifest `copy` queues.
    #[allow(clippy::too_many_arguments)]
    pub fn both_read<E>(
        &mut self,
        p: &str,
        l: &LocalNode,
        r: &RemoteNode,
        manifest: &Manifest,
        remote_manifest: Option<&Manifest>,
        base_manifest: Option<&Manifest>,
        now_ns: i64,
        copy: impl FnOnce() -> Result<BlobRef, E>,
    ) -> Result<(), E> {
        self.new_tree.insert(p.to_owned(), r.clone());
        let same = remote_manifest.is_some_and(|m| m.chunks == manifest.chunks);
        // The version of the base: only the stat was untrusted; a plain
        // remote change, of content or only of mode or mtime.
        let untouched = base_manifest.is_some_and(|m| same_version(m, manifest));
        if untouched && !remote_manifest.is_some_and(|m| same_version(m, manifest)) {
            self.actions.push(Action::Download { path: p.to_owned(), node: r.clone(), expect: Some(l.stat) });
        } else if same {
            self.new_base.insert(p.to_owned(), BaseEntry { node: r.clone(), stat: trusted_stat(l.stat, now_ns) });
        } else {
            let target = copy()?;
            let Sides { local, remote, .. } = self.sides;
            let tree = &self.new_tree;
            let to = conflict_name(p, self.device, now_ns, &|c| {
                local.contains_key(c) || remote.contains_key(c) || tree.contains_key(c)
            });
            self.new_tree.insert(to.clone(), file_node(l, manifest.size, target));
            self.actions.push(Action::RenameAside { from: p.to_owned(), to: to.clone(), expect: l.stat });
            self.actions.push(Action::Download { path: p.to_owned(), node: r.clone(), expect: None });
            self.notes.conflicts.push(to);
        }
        Ok(())
    }

    /// A file changed on both sides changed again while read: the remote
    /// version stays, the local file is left alone until the next sync.
    pub fn both_changed(&mut self, p: &str, r: &RemoteNode) {
        self.notes.skipped.push((p.to_owned(), "changed while being read; will be synced next time".into()));
        self.new_tree.insert(p.to_owned(), r.clone());
    }

    /// Every path needs its parent folders.
    pub fn add_parents(&mut self) {
        let local = self.sides.local;
        let paths: Vec<String> = self.new_tree.keys().cloned().collect();
        for p in paths {
            let mut at = p.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if !self.new_tree.contains_key(parent) {
                    let mode = local.get(parent).map_or(0o755, |l| l.mode);
                    self.new_tree.insert(parent.to_owned(), folder_node(mode, 0));
                    if !local.contains_key(parent) {
                        self.actions.push(Action::MakeDir { path: parent.to_owned(), mode });
                    }
                }
                at = parent;
            }
        }
    }
}

/// A change to a base: a path and its new entry (`None`: removed).
pub type BaseChange<'a> = (&'a str, Option<Cow<'a, BaseEntry>>);

/// The changes to `base` that give the base to record before a commit is
/// sent, in path order: only the effects already true in the folder (what
/// was uploaded or is unchanged), with the old base entry (or none) for
/// every path an action will still change, and for every file the folder
/// is not known to hold in its merged version.
///
/// One ordered walk over the three maps, borrowing their entries: done
/// with a lookup per path and a copy of `new_base`, this took ~20 ms of a
/// 20,000-file commit, with one core idle.
pub fn pending_changes<'a>(base: &'a Base, new_tree: &'a Tree, new_base: &'a Base, actions: &[Action]) -> Vec<BaseChange<'a>> {
    let affected: HashSet<&str> = actions.iter().flat_map(Action::paths).collect();
    let (mut old, mut tree, mut merged) = (base.iter().peekable(), new_tree.iter().peekable(), new_base.iter().peekable());
    let mut changes = Vec::new();
    loop {
        let next = [old.peek().map(|&(p, _)| p), tree.peek().map(|&(p, _)| p), merged.peek().map(|&(p, _)| p)];
        let Some(path) = next.into_iter().flatten().min() else { break };
        let was = old.next_if(|&(p, _)| p == path).map(|(_, e)| e);
        let node = tree.next_if(|&(p, _)| p == path).map(|(_, n)| n);
        let mine = merged.next_if(|&(p, _)| p == path).map(|(_, e)| e);
        let pending = if affected.contains(path.as_str()) {
            was.map(Cow::Borrowed)
        } else {
            match (node, mine) {
                (None, _) => None,
                (Some(_), Some(e)) => Some(Cow::Borrowed(e)),
                (Some(node), None) if node.is_dir => Some(Cow::Owned(BaseEntry { node: node.clone(), stat: None })),
                (Some(_), None) => was.map(Cow::Borrowed),
            }
        };
        match (was, pending) {
            (None, None) => {}
            (Some(was), Some(now)) if *was == *now => {}
            (_, now) => changes.push((path.as_str(), now)),
        }
    }
    changes
}

/// The base to save once the local changes are made: `new_base` (what was
/// uploaded, is unchanged, or was downloaded) with every folder of the
/// merged tree; a file the folder is not known to hold in its merged
/// version (a download left alone because the file changed meanwhile, a
/// copy not moved aside, a file changed while read) keeps its old entry
/// (or none), so the next sync sees the change on both sides and compares
/// content. Entries without a trusted stat are likewise compared by content.
///
/// Returns whether the base mirrors the merged tree exactly: only then may
/// its head be recorded with it (an unchanged head lets the next sync use
/// the base as the remote tree).
///
/// Like [`pending_changes`], one ordered walk rather than a lookup per path.
pub fn finish_base(base: &Base, new_tree: &Tree, new_base: &mut Base) -> bool {
    let mut merged = std::mem::take(new_base).into_iter().peekable();
    let mut old = base.iter().peekable();
    let mut out = Vec::with_capacity(new_tree.len());
    let mut mirrors = true;
    for (path, node) in new_tree {
        // Entries of paths the merged tree lacks are dropped on the way.
        while merged.next_if(|(p, _)| p < path).is_some() {}
        while old.next_if(|&(p, _)| p < path).is_some() {}
        let mine = merged.next_if(|(p, _)| p == path);
        let entry = match (node.is_dir, mine) {
            (true, mine) => Some((mine.map_or_else(|| path.clone(), |(p, _)| p), BaseEntry { node: node.clone(), stat: None })),
            (false, Some(mine)) => Some(mine),
            (false, None) => old.next_if(|&(p, _)| p == path).map(|(p, e)| (p.clone(), e.clone())),
        };
        match entry {
            Some((path, entry)) => {
                mirrors &= entry.node == *node;
                out.push((path, entry));
            }
            None => mirrors = false,
        }
    }
    // In path order already, so the map is built without a search per entry.
    *new_base = out.into_iter().collect();
    mirrors
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use keyhold_core::{ChunkRef, FileId, FileMeta};
    use proptest::prelude::*;

    use super::*;

    fn stat(n: u64) -> Stat {
        Stat { size: 1, mtime_ns: 1, ino: n, ctime_ns: 1 }
    }

    fn file(t: u8) -> RemoteNode {
        RemoteNode { is_dir: false, size: 1, mtime_ns: 1, mode: 0o644, target: BlobRef { epoch: 0, id: BlobId([t; 32]) } }
    }

    fn local(is_dir: bool, n: u64) -> LocalNode {
        LocalNode { is_dir, mode: if is_dir { 0o755 } else { 0o644 }, mtime_ns: 1, stat: stat(n) }
    }

    fn manifest(content: u8, mode: u32) -> Manifest {
        let meta = FileMeta { file_id: FileId([1; 16]), version: 1, name: "a".into(), mode, mtime_ns: 1 };
        Manifest { meta, size: 1, chunks: vec![ChunkRef { id: BlobId([content; 32]), len: 1 }] }
    }

    fn entry(node: RemoteNode, stat: Option<Stat>) -> BaseEntry {
        BaseEntry { node, stat }
    }

    fn ordered(mut actions: Vec<Action>) -> Vec<Action> {
        order(&mut actions);
        actions
    }

    #[test]
    fn an_unchanged_file_replaced_by_a_folder_is_removed_first() {
        let base = Base::from([("a".into(), entry(file(1), Some(stat(1))))]);
        let local = Local::from([("a".into(), local(false, 1))]);
        let remote = Tree::from([("a".into(), folder_node(0o755, 0)), ("a/x".into(), file(2))]);
        let plan = plan(Sides { base: &base, local: &local, remote: &remote }, "device01", 0);
        assert_eq!(
            ordered(plan.actions),
            [
                Action::DeleteFile { path: "a".into(), expect: stat(1) },
                Action::MakeDir { path: "a".into(), mode: 0o755 },
                Action::Download { path: "a/x".into(), node: file(2), expect: None },
            ]
        );
    }

    #[test]
    fn an_unchanged_folder_replaced_by_a_file_is_emptied_and_removed_first() {
        let base = Base::from([("a".into(), entry(folder_node(0o755, 0), None)), ("a/x".into(), entry(file(1), Some(stat(1))))]);
        let local = Local::from([("a".into(), local(true, 2)), ("a/x".into(), local(false, 1))]);
        let remote = Tree::from([("a".into(), file(3))]);
        let plan = plan(Sides { base: &base, local: &local, remote: &remote }, "device01", 0);
        assert_eq!(
            ordered(plan.actions),
            [
                Action::DeleteFile { path: "a/x".into(), expect: stat(1) },
                Action::DeleteDir { path: "a".into() },
                Action::Download { path: "a".into(), node: file(3), expect: None },
            ]
        );
    }

    #[test]
    fn a_local_file_never_lands_above_remote_files() {
        // Here: folder `a` replaced by a file. There: `a/b` added.
        let base = Base::from([("a".into(), entry(folder_node(0o755, 0), None))]);
        let local = Local::from([("a".into(), local(false, 5))]);
        let remote = Tree::from([("a".into(), folder_node(0o755, 0)), ("a/b".into(), file(2))]);
        let plan = plan(Sides { base: &base, local: &local, remote: &remote }, "device01", 0);
        assert!(plan.new_tree["a"].is_dir);
        let [copy] = plan.to_upload.as_slice() else { panic!("{:?}", plan.to_upload) };
        assert!(copy.starts_with("a (conflict device01 "));
        assert_eq!(plan.source(copy), "a");
        let actions = ordered(plan.actions);
        assert_eq!(actions[0], Action::RenameAside { from: "a".into(), to: copy.clone(), expect: stat(5) });
        assert_eq!(actions[1], Action::MakeDir { path: "a".into(), mode: 0o755 });
        assert_eq!(actions[2], Action::Download { path: "a/b".into(), node: file(2), expect: None });
    }

    #[test]
    fn a_remote_file_never_lands_above_local_files() {
        // There: folder `a` replaced by a file. Here: `a/new` added.
        let base = Base::from([("a".into(), entry(folder_node(0o755, 0), None)), ("a/x".into(), entry(file(1), Some(stat(1))))]);
        let local =
            Local::from([("a".into(), local(true, 2)), ("a/x".into(), local(false, 1)), ("a/new".into(), local(false, 9))]);
        let remote = Tree::from([("a".into(), file(3))]);
        let plan = plan(Sides { base: &base, local: &local, remote: &remote }, "device01", 0);
        assert!(plan.new_tree["a"].is_dir);
        assert_eq!(plan.to_upload, ["a/new"]);
        let copy = plan.notes.conflicts[0].clone();
        assert_eq!(plan.new_tree[&copy], file(3));
        assert_eq!(
            ordered(plan.actions),
            [
                Action::Download { path: copy, node: file(3), expect: None },
                Action::DeleteFile { path: "a/x".into(), expect: stat(1) },
            ]
        );
    }

    #[test]
    fn an_untouched_file_takes_a_remote_change_of_mode() {
        let (l, r) = (local(false, 1), file(2));
        let (base, folder, remote) = (Base::new(), Local::new(), Tree::new());
        let mut plan = plan(Sides { base: &base, local: &folder, remote: &remote }, "device01", 0);
        let (mine, theirs) = (manifest(7, 0o600), manifest(7, 0o644));
        plan.both_read("a", &l, &r, &mine, Some(&theirs), Some(&mine), 0, || Err(())).unwrap();
        assert_eq!(plan.actions, [Action::Download { path: "a".into(), node: r, expect: Some(stat(1)) }]);
        assert!(plan.new_base.is_empty());
    }

    #[test]
    fn an_unchanged_file_with_an_untrusted_stat_yields_to_a_deletion() {
        let base = Base::from([("a".into(), entry(file(1), None))]);
        let local = Local::from([("a".into(), local(false, 1))]);
        let remote = Tree::new();
        let mut plan = plan(Sides { base: &base, local: &local, remote: &remote }, "device01", 0);
        assert_eq!(plan.to_upload, ["a"]);
        let m = manifest(7, 0o644);
        plan.upload_read("a", &local["a"], &m, Some((&m, &file(1))), 0, || Err(())).unwrap();
        assert_eq!(plan.actions, [Action::DeleteFile { path: "a".into(), expect: stat(1) }]);
        assert!(plan.new_tree.is_empty());
    }

    /// `pending_changes` applied to the base, as it was specified before it
    /// became an ordered walk (the reference for the test below).
    fn pending_base_by_lookups(base: &Base, new_tree: &Tree, new_base: &Base, actions: &[Action]) -> Base {
        let affected: HashSet<&str> = actions.iter().flat_map(Action::paths).collect();
        let mut pending = new_base.clone();
        for (p, node) in new_tree {
            if !affected.contains(p.as_str()) && !pending.contains_key(p) {
                if node.is_dir {
                    pending.insert(p.clone(), BaseEntry { node: node.clone(), stat: None });
                } else if let Some(b) = base.get(p) {
                    pending.insert(p.clone(), b.clone());
                }
            }
        }
        pending.retain(|p, _| new_tree.contains_key(p));
        for p in &affected {
            match base.get(*p) {
                Some(b) => pending.insert((*p).to_owned(), b.clone()),
                None => pending.remove(*p),
            };
        }
        pending
    }

    /// `finish_base` as it was specified before it became an ordered walk.
    fn finish_base_by_lookups(base: &Base, new_tree: &Tree, new_base: &mut Base) -> bool {
        for (p, node) in new_tree {
            if node.is_dir {
                new_base.insert(p.clone(), BaseEntry { node: node.clone(), stat: None });
            } else if !new_base.contains_key(p) {
                if let Some(b) = base.get(p) {
                    new_base.insert(p.clone(), b.clone());
                }
            }
        }
        new_base.retain(|p, _| new_tree.contains_key(p));
        new_base.len() == new_tree.len() && new_base.iter().all(|(p, b)| new_tree.get(p) == Some(&b.node))
    }

    fn any_node() -> impl Strategy<Value = RemoteNode> {
        prop_oneof![1 => Just(folder_node(0o755, 0)), 3 => (0u8..3).prop_map(file)]
    }

    fn any_entry() -> impl Strategy<Value = BaseEntry> {
        (any_node(), proptest::option::of(0u64..2)).prop_map(|(node, s)| entry(node, s.map(stat)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Small random maps over a few paths, so that every overlap of the
        /// three maps and the actions comes up many times.
        #[test]
        fn the_ordered_walks_give_what_the_lookups_gave(
            per_path in proptest::collection::vec(
                (
                    proptest::option::of(any_entry()),
                    proptest::option::weighted(2.0 / 3.0, any_node()),
                    proptest::option::of(any_entry()),
                    proptest::bool::weighted(0.2),
                ),
                7,
            )
        ) {
            let paths = ["a", "a/b", "a/b/c", "a0", "b", "b/ü", "c"];
            let (mut base, mut tree, mut merged, mut actions) = (Base::new(), Tree::new(), Base::new(), Vec::new());
            for (p, (old, node, mine, deleted)) in paths.into_iter().zip(per_path) {
                if let Some(e) = old {
                    base.insert(p.into(), e);
                }
                if let Some(n) = node {
                    tree.insert(p.into(), n);
                }
                if let Some(e) = mine {
                    merged.insert(p.into(), e);
                }
                if deleted {
                    actions.push(Action::DeleteDir { path: p.into() });
                }
            }
            let changes = pending_changes(&base, &tree, &merged, &actions);
            let mut pending = base.clone();
            for (p, e) in &changes {
                assert_ne!(base.get(*p), e.as_deref(), "a change that changes nothing: {p}");
                match e {
                    Some(e) => pending.insert((*p).to_owned(), e.clone().into_owned()),
                    None => pending.remove(*p),
                };
            }
            assert!(changes.windows(2).all(|w| w[0].0 < w[1].0), "changes out of path order");
            assert_eq!(pending, pending_base_by_lookups(&base, &tree, &merged, &actions));
            let (mut walked, mut looked_up) = (merged.clone(), merged);
            assert_eq!(finish_base(&base, &tree, &mut walked), finish_base_by_lookups(&base, &tree, &mut looked_up));
            assert_eq!(walked, looked_up);
        }
    }

    #[test]
    fn the_base_keeps_what_the_folder_holds() {
        let base = Base::from([("a".into(), entry(file(1), Some(stat(1))))]);
        let tree = Tree::from([("a".into(), file(2)), ("d".into(), folder_node(0o755, 0))]);
        // The download of `a` was left alone: `a` keeps its old entry.
        let mut new_base = Base::new();
        assert!(!finish_base(&base, &tree, &mut new_base));
        assert_eq!(new_base["a"], base["a"]);
        // It landed: the base mirrors the tree.
        let mut new_base = Base::from([("a".into(), entry(file(2), None))]);
        assert!(finish_base(&base, &tree, &mut new_base));
        assert_eq!(new_base.len(), 2);
    }
}
