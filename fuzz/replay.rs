//! Shared by the tests that replay the fuzz corpora (keyhold-core's,
//! keyhold-proto's and keyhold-client's `tests/fuzz_corpus.rs`): runs one
//! input through a target and turns a panic into its message, so that one
//! failing input does not hide the others.

use std::panic::{AssertUnwindSafe, catch_unwind};

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
