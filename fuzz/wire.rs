//! The `wire` fuzz target: the server's JSON answers as the client parses
//! them (`serde_json::from_slice` into keyhold-proto's response types). The
//! first byte picks the type ([`wire`]), the rest is the body. An accepted
//! body must re-encode to JSON that parses back to the same encoding.
//!
//! Shared by `fuzz_targets/wire.rs` (libFuzzer) and keyhold-proto's
//! `tests/fuzz_corpus.rs` (replays `corpus/wire/` in `cargo test`) with
//! `#[path]`.

use keyhold_proto::links::{LinkCreated, Links};
use keyhold_proto::{
    AccountKeys, Challenge, DeviceChainEntries, ErrorBody, HeadRecord, Packs, PairingAttempt, PairingAttemptId, PairingAttempts,
    PairingSlot, RecoveryInfo, Revisions, Session, Usage,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `json` as a `T`; if it parses, checks that its encoding is stable.
fn parse<T: Serialize + DeserializeOwned>(json: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(json) else { return };
    let encoded = serde_json::to_vec(&value).unwrap_or_else(|e| panic!("cannot encode a parsed body: {e}"));
    let again: T = serde_json::from_slice(&encoded).unwrap_or_else(|e| panic!("re-encoded body does not parse: {e}"));
    let encoded_again = serde_json::to_vec(&again).unwrap_or_else(|e| panic!("cannot encode a reparsed body: {e}"));
    assert!(encoded == encoded_again, "body encoding is not stable");
}

/// The entry function: the first byte (mod 16) picks the response type (in
/// the order of the `match`), the rest is parsed as it.
pub fn wire(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else { return };
    match selector % 16 {
        0 => parse::<AccountKeys>(json),
        1 => parse::<DeviceChainEntries>(json),
        2 => parse::<RecoveryInfo>(json),
        3 => parse::<Revisions>(json),
        4 => parse::<Packs>(json),
        5 => parse::<HeadRecord>(json),
        6 => parse::<PairingAttempt>(json),
        7 => parse::<PairingAttempts>(json),
        8 => parse::<PairingSlot>(json),
        9 => parse::<PairingAttemptId>(json),
        10 => parse::<ErrorBody>(json),
        11 => parse::<Usage>(json),
        12 => parse::<Challenge>(json),
        13 => parse::<Session>(json),
        14 => parse::<Links>(json),
        _ => parse::<LinkCreated>(json),
    }
}
