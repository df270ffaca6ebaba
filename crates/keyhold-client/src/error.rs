//! Client errors. A variant with a source does not repeat it in its own
//! message: callers print the chain (`{:#}`), once. Integrity failures (anything the core refuses) are kept
//! apart from transport and local failures: they mean the server, or
//! something between, lied, and the message says so plainly.

use std::path::PathBuf;

/// What can stop a client operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No account on this device yet.
    #[error("this device has no Keyhold account yet (looked in {0}); run `keyhold init` or `keyhold recover`")]
    NotInitialized(PathBuf),
    /// An account exists already.
    #[error("this device already has an account ({0}); use another KEYHOLD_HOME for another account")]
    AlreadyInitialized(PathBuf),
    /// Verification of server data failed: tampering, rollback, fork or injection.
    #[error("integrity check failed: the server returned data that does not verify; nothing was changed locally")]
    Integrity(#[from] keyhold_core::Error),
    /// The server withholds something the verified state says it holds (a
    /// key of an epoch the device chain started, a collection key it claims
    /// exists): an honest server cannot do that, so it counts as tampering.
    #[error("integrity check failed: the server withholds {0}; nothing was changed locally")]
    Withheld(String),
    /// A key transparency check failed (a split view, a rollback, a stale
    /// log before a key change, a change of this account no device made):
    /// counts as tampering.
    #[error(
        "key transparency check failed: {reason}{}; adding or revoking devices is blocked until this is resolved",
        evidence.as_ref().map(|p| format!(" (evidence kept in {})", p.display())).unwrap_or_default()
    )]
    Transparency {
        /// What did not verify, plainly.
        reason: String,
        /// The file holding the conflicting signed objects, to hand on.
        evidence: Option<PathBuf>,
    },
    /// The server's answer does not follow the protocol.
    #[error("the server answered something unexpected: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error("server error {status} ({code}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Stable machine code.
        code: String,
        /// Human message.
        message: String,
    },
    /// The server could not be reached.
    #[error("cannot reach the server")]
    Http(#[from] reqwest::Error),
    /// Local filesystem failure.
    #[error("{}", path.display())]
    Io {
        /// Which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The local state database failed.
    #[error("local state database")]
    State(#[from] rusqlite::Error),
    /// Bad input from the user.
    #[error("{0}")]
    Usage(String),
    /// `check` found data the verified history needs missing or corrupt.
    #[error("check found {0} damaged object(s): data the verified history needs is missing or corrupt (listed above)")]
    Damaged(usize),
    /// A blob the tree names is not in any pack the server lists.
    #[error("missing data: blob {0} is not stored on the server")]
    MissingBlob(String),
}

impl ClientError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::Io { path, source }
    }
}

/// Shorthand.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
