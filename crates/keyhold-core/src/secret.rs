//! Secret key types: zeroized on drop, redacted in `Debug`, never `Clone`
//! or serializable by accident; reading the bytes is spelled out with
//! `expose_secret`.

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps existing key bytes (for example after unwrapping them).
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(bytes)
            }

            /// Draws a fresh key from a cryptographic RNG.
            pub fn generate(rng: &mut impl CryptoRng) -> Self {
                let mut bytes = [0u8; 32];
                rng.fill_bytes(&mut bytes);
                $name(bytes)
            }

            /// The raw key bytes. Callers must not log, store in clear or send them.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

secret_key!(
    /// The account root key: the top of an account's key hierarchy for one
    /// account key epoch. Wrapped to each device and to the recovery key.
    AccountRootKey
);
secret_key!(
    /// A collection key for one collection key epoch; every key that
    /// protects the collection's data is derived from it.
    CollectionKey
);
secret_key!(
    /// The secret of a link share: the 32 random bytes its URL fragment
    /// carries. Every key of the link is derived from it (and, for a
    /// password link, from the password too); it never reaches the server.
    LinkSecret
);
/// A 32-byte symmetric key derived for one purpose (internal use).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SubKey([u8; 32]);

impl SubKey {
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        SubKey(bytes)
    }

    pub(crate) fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}
