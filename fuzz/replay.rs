//! Shared by the tests that replay the fuzz corpora (keyhold-core's,
//! keyhold-proto's and keyhold-client's `tests/fuzz_corpus.rs`): reads a
//! target's corpus, and runs one input through a target turning a panic
//! into its message, so that one failing input does not hide the others.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Every file of `corpora/<name>/` (hidden files aside) with its bytes.
/// Panics if the folder is missing or empty: a replay must not test nothing.
pub fn corpus(corpora: &Path, name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpora.join(name);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus of fuzz target {name} missing ({}): {e}", dir.display()));
    let files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path())
        .filter(|p| p.is_file() && !p.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.')))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    assert!(!files.is_empty(), "corpus of fuzz target {name} is empty ({})", dir.display());
    files
}

/// `Some(message)` if `f` panicked.
pub fn panic_message(f: impl FnOnce()) -> Option<String> {
    catch_unwind(AssertUnwindSafe(f)).err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "non-string panic".to_owned())
    })
}
