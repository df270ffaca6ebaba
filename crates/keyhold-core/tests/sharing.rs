//! Sharing formats (`docs/spec/sharing.md`): the vectors in
//! `docs/spec/sharing-vectors/`, checked both ways — regenerated and
//! compared byte for byte, and each file verified from its own contents only,
//! as a second implementation would.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use keyhold_core::share::{
    HandleClaim, KeyGrant, MEMBER_GENESIS_PREV, MemberChange, MemberEntry, MemberList, Role, ShareResponse, key_commitment,
    open_shared_name, seal_shared_name,
};
use keyhold_core::{
    AccountId, ChainHead, CollectionId, CollectionKey, DeviceId, DevicePublicKeys, DeviceSecret, Error, ObjectId,
};
use serde_json::{Value, json};
use vector_files::{RecordingRng, ReplayRng, check_generated, h, unh, unh16, unh32};

#[path = "support/vector_files.rs"]
mod vector_files;

fn error_name(e: &Error) -> String {
    format!("{e:?}").split(['(', ' ', '{']).next().unwrap().to_owned()
}
fn outcome<T>(r: Result<T, Error>) -> String {
    r.map_or_else(|e| error_name(&e), |_| "ok".to_owned())
}

const COLLECTION: CollectionId = CollectionId([0x5c; 16]);
const OWNER: AccountId = AccountId([0xa1; 16]);
const BOB: AccountId = AccountId([0xb0; 16]);
const CAROL: AccountId = AccountId([0xc0; 16]);
const TIME: i64 = 1_800_000_000_000;

fn device(signing: u8, kem: u8) -> DeviceSecret {
    DeviceSecret::from_seeds(&[signing; 32], &[kem; 32])
}

fn device_json(signing: u8, kem: u8) -> Value {
    json!({"signing_seed": h(&[signing; 32]), "kem_seed": h(&[kem; 32])})
}

fn device_of(v: &Value) -> DeviceSecret {
    DeviceSecret::from_seeds(&unh32(&v["signing_seed"]), &unh32(&v["kem_seed"]))
}

fn entry(seq: u64, prev: ObjectId, key_epoch: u32, signer: &DeviceSecret, change: MemberChange) -> MemberEntry {
    MemberEntry { collection: COLLECTION, owner: OWNER, seq, prev, time_ms: TIME, key_epoch, signer: signer.id(), change }
}

/// The owner's device, two epoch keys, and a list: create, add Bob
/// (writer), add Carol (reader), remove Bob (cutoff 5, epoch 1).
struct Fixture {
    owner_device: DeviceSecret,
    keys: [CollectionKey; 2],
    entries: Vec<Vec<u8>>,
    randomness: String,
}

fn fixture() -> Fixture {
    let owner_device = device(0x01, 0x02);
    let keys = [CollectionKey::from_bytes([0x10; 32]), CollectionKey::from_bytes([0x11; 32])];
    let mut rng = RecordingRng::new(9);
    let sealed_name = seal_shared_name(&keys[0], COLLECTION, OWNER, "Holiday photos", &mut rng).unwrap();
    let commitments = vec![key_commitment(&keys[0], COLLECTION, 0)];
    let create = entry(0, MEMBER_GENESIS_PREV, 0, &owner_device, MemberChange::Create { commitments, sealed_name })
        .seal(&owner_device)
        .unwrap();
    let chain = ChainHead { seq: 2, id: ObjectId([0x77; 32]) };
    let add_bob =
        entry(1, ObjectId::of(&create), 0, &owner_device, MemberChange::Add { account: BOB, role: Role::Writer, chain })
            .seal(&owner_device)
            .unwrap();
    let add_carol =
        entry(2, ObjectId::of(&add_bob), 0, &owner_device, MemberChange::Add { account: CAROL, role: Role::Reader, chain })
            .seal(&owner_device)
            .unwrap();
    let remove = entry(
        3,
        ObjectId::of(&add_carol),
        1,
        &owner_device,
        MemberChange::Remove { account: BOB, cutoff: 5, commitment: key_commitment(&keys[1], COLLECTION, 1) },
    )
    .seal(&owner_device)
    .unwrap();
    Fixture { owner_device, keys, entries: vec![create, add_bob, add_carol, remove], randomness: rng.take() }
}

fn list_inputs(f: &Fixture) -> Value {
    json!({
        "collection_id": h(COLLECTION.as_bytes()), "owner": h(OWNER.as_bytes()),
        "owner_device": device_json(0x01, 0x02),
        "keys": f.keys.iter().map(|k| h(k.expose_secret())).collect::<Vec<_>>(),
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn generate() -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let f = fixture();
    let entries_hex = |entries: &[Vec<u8>]| entries.iter().map(|e| h(e)).collect::<Vec<_>>();
    out.insert(
        "member-list.json",
        with(list_inputs(&f), json!({
            "description": "A member list: create (name sealed under epoch 0's key), add Bob as writer, add Carol as reader, remove Bob (cutoff 5, starts epoch 1). Outputs: the state the verified list holds.",
            "kind": "member-list",
            "entries": entries_hex(&f.entries),
            "randomness": f.randomness,
            "name": "Holiday photos",
            "key_epoch": 1,
            "head_id": h(ObjectId::of(&f.entries[3]).as_bytes()),
            "members": [
                {"account": h(BOB.as_bytes()), "role": "writer", "cutoff": 5},
                {"account": h(CAROL.as_bytes()), "role": "reader", "cutoff": null}
            ],
            "expect": "ok"
        })),
    );
    let mallory = device(0x66, 0x67);
    let forged = entry(
        4,
        ObjectId::of(&f.entries[3]),
        1,
        &mallory,
        MemberChange::Add {
            account: AccountId([0xee; 16]),
            role: Role::Writer,
            chain: ChainHead { seq: 0, id: ObjectId([0; 32]) },
        },
    )
    .seal(&mallory)
    .unwrap();
    let mut entries = f.entries.clone();
    entries.push(forged);
    out.insert(
        "member-list-forged-entry.json",
        with(list_inputs(&f), json!({
            "description": "The member list with a fifth entry adding an account, signed by a device that is not the owner's (the server inserting a member).",
            "kind": "member-list", "entries": entries_hex(&entries), "expect": "UnknownAuthor"
        })),
    );
    let mut entries = f.entries.clone();
    entries[2][107 + 1] ^= 0x01;
    out.insert(
        "member-list-flipped.json",
        with(
            list_inputs(&f),
            json!({
                "description": "The member list with one bit of Carol's add entry (the added account) flipped.",
                "kind": "member-list", "entries": entries_hex(&entries), "expect": "BadSignature"
            }),
        ),
    );
    let skipped = entry(2, ObjectId::of(&f.entries[0]), 0, &f.owner_device, MemberChange::Rotate { commitment: [0; 32] });
    let mut entries = f.entries[..2].to_vec();
    entries.push(skipped.seal(&f.owner_device).unwrap());
    out.insert(
        "member-list-wrong-prev.json",
        with(list_inputs(&f), json!({
            "description": "Create, add Bob, then an entry signed by the owner whose prev names the create entry, not Bob's add (a dropped or reordered entry).",
            "kind": "member-list", "entries": entries_hex(&entries), "expect": "Malformed"
        })),
    );
    let same_epoch = entry(
        2,
        ObjectId::of(&f.entries[1]),
        0,
        &f.owner_device,
        MemberChange::Remove { account: BOB, cutoff: 1, commitment: [0; 32] },
    );
    let mut entries = f.entries[..2].to_vec();
    entries.push(same_epoch.seal(&f.owner_device).unwrap());
    out.insert(
        "member-list-remove-keeps-epoch.json",
        with(list_inputs(&f), json!({
            "description": "A remove entry that does not start a new key epoch: refused, or the removed member would keep reading.",
            "kind": "member-list", "entries": entries_hex(&entries), "expect": "ContextMismatch"
        })),
    );

    // Grants: to Carol's two devices, at the remove entry, keys 0 and 1.
    let carol_laptop = device(0x21, 0x22);
    let carol_phone = device(0x23, 0x24);
    let at = ChainHead { seq: 3, id: ObjectId::of(&f.entries[3]) };
    let mut rng = RecordingRng::new(11);
    let grant = KeyGrant::seal(
        COLLECTION,
        OWNER,
        &f.owner_device,
        CAROL,
        at,
        Role::Reader,
        &[&f.keys[0], &f.keys[1]],
        "Holiday photos",
        &[carol_laptop.public(), carol_phone.public()],
        &mut rng,
    )
    .unwrap();
    let grant_randomness = rng.take();
    let grant_inputs = with(
        list_inputs(&f),
        json!({
            "kind": "key-grant",
            "entries": entries_hex(&f.entries),
            "member": h(CAROL.as_bytes()),
            "member_devices": [device_json(0x21, 0x22), device_json(0x23, 0x24)],
            "role": "reader",
            "name": "Holiday photos",
            "entry_seq": 3,
            "entry_id": h(at.id.as_bytes()),
        }),
    );
    out.insert(
        "key-grant.json",
        with(grant_inputs.clone(), json!({
            "description": "The owner grants Carol's two devices the keys of epochs 0 and 1 and the name, tied to the remove entry; recipients sorted by device id; the randomness is each wrap's 64-byte eseed in that order. Each of Carol's devices opens it, and both keys match the member list's commitments.",
            "grant": h(&grant), "randomness": grant_randomness, "expect": "ok"
        })),
    );
    let mut flipped = grant.clone();
    let last = flipped.len() - 80;
    flipped[last] ^= 0x01;
    out.insert(
        "key-grant-flipped.json",
        with(
            grant_inputs.clone(),
            json!({
                "description": "The grant with one bit of its last wrap's ciphertext flipped: its signature fails.",
                "grant": h(&flipped), "expect": "BadSignature"
            }),
        ),
    );
    let mut rng = RecordingRng::new(12);
    let chosen = CollectionKey::from_bytes([0x99; 32]);
    let substituted = KeyGrant::seal(
        COLLECTION,
        OWNER,
        &f.owner_device,
        CAROL,
        at,
        Role::Reader,
        &[&f.keys[0], &chosen],
        "Holiday photos",
        &[carol_laptop.public(), carol_phone.public()],
        &mut rng,
    )
    .unwrap();
    out.insert(
        "key-grant-uncommitted-key.json",
        with(grant_inputs.clone(), json!({
            "description": "A grant, validly signed, whose epoch-1 key is not the one the member list commits to: the member refuses it (as it refuses a key the server sealed).",
            "grant": h(&substituted), "randomness": rng.take(), "expect": "ContextMismatch"
        })),
    );
    out.insert(
        "key-grant-other-device.json",
        with(
            grant_inputs,
            json!({
                "description": "The grant opened by a device of Carol's that it was not sealed to.",
                "grant": h(&grant), "member_devices": [device_json(0x25, 0x26)], "expect": "ContextMismatch"
            }),
        ),
    );

    let response = ShareResponse {
        collection: COLLECTION,
        owner: OWNER,
        member: CAROL,
        device: carol_phone.id(),
        grant: ObjectId::of(&grant),
        accept: true,
        time_ms: TIME,
    };
    let stored = response.seal(&carol_phone).unwrap();
    let response_inputs = json!({
        "kind": "share-response",
        "collection_id": h(COLLECTION.as_bytes()), "owner": h(OWNER.as_bytes()), "member": h(CAROL.as_bytes()),
        "member_device": device_json(0x23, 0x24), "grant_id": h(ObjectId::of(&grant).as_bytes()),
        "accept": true, "time_ms": TIME,
    });
    out.insert(
        "share-response.json",
        with(
            response_inputs.clone(),
            json!({
                "description": "Carol's phone accepts the grant (176 bytes).", "response": h(&stored), "expect": "ok"
            }),
        ),
    );
    let mut flipped = stored.clone();
    flipped[103] = 0x00;
    out.insert(
        "share-response-flipped.json",
        with(response_inputs, json!({
            "description": "The acceptance rewritten to a refusal: its signature fails.", "response": h(&flipped), "expect": "BadSignature"
        })),
    );
    let bob_laptop = device(0x31, 0x32);
    let claim = HandleClaim { handle: "bob.smith".into(), account: BOB, device: bob_laptop.id(), time_ms: TIME };
    let stored = claim.seal(&bob_laptop).unwrap();
    let claim_inputs = json!({
        "kind": "handle-claim", "handle": "bob.smith", "account": h(BOB.as_bytes()),
        "device": device_json(0x31, 0x32), "time_ms": TIME,
    });
    out.insert(
        "handle-claim.json",
        with(claim_inputs.clone(), json!({
            "description": "Bob's laptop claims the handle bob.smith for Bob's account (the directory publishes H(claim) under 0x03 || handle).",
            "claim": h(&stored), "claim_id": h(ObjectId::of(&stored).as_bytes()), "expect": "ok"
        })),
    );
    let mut other = stored.clone();
    other[8] = b'r';
    out.insert(
        "handle-claim-renamed.json",
        with(claim_inputs.clone(), json!({
            "description": "The claim with its handle rewritten to rob.smith: the signature fails.", "claim": h(&other), "expect": "BadSignature"
        })),
    );
    let mut upper = stored.clone();
    upper[8] = b'B';
    out.insert(
        "handle-claim-uppercase.json",
        with(claim_inputs, json!({
            "description": "The claim with an upper-case letter in its handle: not a handle (one spelling per name).", "claim": h(&upper), "expect": "Malformed"
        })),
    );
    out
}

fn check_handle_claim(v: &Value) -> String {
    let device = device_of(&v["device"]);
    let stored = unh(&v["claim"]);
    let claim = match HandleClaim::verify(&stored, |id| (*id == device.id()).then(|| device.public().clone())) {
        Ok(c) => c,
        Err(e) => return error_name(&e),
    };
    assert_eq!(claim.handle, v["handle"].as_str().unwrap());
    assert_eq!(claim.account, AccountId(unh16(&v["account"])));
    assert_eq!(claim.time_ms, v["time_ms"].as_i64().unwrap());
    assert_eq!(h(ObjectId::of(&stored).as_bytes()), v["claim_id"].as_str().unwrap());
    "ok".into()
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec/sharing-vectors")
}

#[test]
fn generated_vectors_match_the_files() {
    check_generated(&vectors_dir(), &generate());
}

fn owner_devices(v: &Value) -> impl Fn(&DeviceId) -> Option<DevicePublicKeys> {
    let owner = device_of(&v["owner_device"]);
    move |id| (*id == owner.id()).then(|| owner.public().clone())
}

fn verify_list(v: &Value) -> Result<MemberList, Error> {
    let entries: Vec<Vec<u8>> = v["entries"].as_array().unwrap().iter().map(unh).collect();
    MemberList::verify(
        CollectionId(unh16(&v["collection_id"])),
        AccountId(unh16(&v["owner"])),
        entries.iter().map(Vec::as_slice),
        owner_devices(v),
    )
}

fn keys_of(v: &Value) -> Vec<CollectionKey> {
    v["keys"].as_array().unwrap().iter().map(|k| CollectionKey::from_bytes(unh32(k))).collect()
}

fn check_member_list(v: &Value) -> String {
    let list = match verify_list(v) {
        Ok(list) => list,
        Err(e) => return error_name(&e),
    };
    let keys = keys_of(v);
    for (epoch, key) in keys.iter().enumerate() {
        list.check_key(u32::try_from(epoch).unwrap(), key).unwrap();
    }
    let collection = CollectionId(unh16(&v["collection_id"]));
    let owner = AccountId(unh16(&v["owner"]));
    assert_eq!(open_shared_name(&keys[0], collection, owner, list.sealed_name()).unwrap(), v["name"].as_str().unwrap());
    assert_eq!(u64::from(list.key_epoch()), v["key_epoch"].as_u64().unwrap());
    assert_eq!(h(list.head().id.as_bytes()), v["head_id"].as_str().unwrap());
    let members: Vec<Value> = list
        .members()
        .iter()
        .map(|(a, m)| {
            json!({"account": h(a.as_bytes()), "role": if m.role == Role::Writer { "writer" } else { "reader" }, "cutoff": m.cutoff})
        })
        .collect();
    assert_eq!(Value::Array(members), v["members"]);
    // The sealed name replays from the recorded nonce.
    let mut replay = ReplayRng::new(&v["randomness"]);
    let resealed = seal_shared_name(&keys[0], collection, owner, v["name"].as_str().unwrap(), &mut replay).unwrap();
    assert_eq!(resealed, list.sealed_name());
    "ok".into()
}

fn check_key_grant(v: &Value) -> String {
    let list = verify_list(v).unwrap();
    let stored = unh(&v["grant"]);
    let grant = match KeyGrant::verify(&stored, owner_devices(v)) {
        Ok(g) => g,
        Err(e) => return error_name(&e),
    };
    assert_eq!(grant.entry, ChainHead { seq: v["entry_seq"].as_u64().unwrap(), id: ObjectId(unh32(&v["entry_id"])) });
    let member = AccountId(unh16(&v["member"]));
    for d in v["member_devices"].as_array().unwrap() {
        let granted = match grant.open(&device_of(d), member) {
            Ok(g) => g,
            Err(e) => return error_name(&e),
        };
        assert_eq!(granted.name, v["name"].as_str().unwrap());
        for (epoch, key) in granted.keys.iter().enumerate() {
            if let Err(e) = list.check_key(u32::try_from(epoch).unwrap(), key) {
                return error_name(&e);
            }
        }
    }
    if v["expect"] == "ok" {
        // Generation direction: the recorded eseeds reproduce the grant.
        let devices: Vec<DeviceSecret> = v["member_devices"].as_array().unwrap().iter().map(device_of).collect();
        let publics: Vec<&DevicePublicKeys> = devices.iter().map(DeviceSecret::public).collect();
        let keys = keys_of(v);
        let key_refs: Vec<&CollectionKey> = keys.iter().collect();
        let mut replay = ReplayRng::new(&v["randomness"]);
        let again = KeyGrant::seal(
            grant.collection,
            grant.owner,
            &device_of(&v["owner_device"]),
            member,
            grant.entry,
            grant.role,
            &key_refs,
            v["name"].as_str().unwrap(),
            &publics,
            &mut replay,
        )
        .unwrap();
        assert_eq!(again, stored);
    }
    "ok".into()
}

fn check_share_response(v: &Value) -> String {
    let device = device_of(&v["member_device"]);
    let stored = unh(&v["response"]);
    let response = match ShareResponse::verify(&stored, |id| (*id == device.id()).then(|| device.public().clone())) {
        Ok(r) => r,
        Err(e) => return error_name(&e),
    };
    assert_eq!(response.collection, CollectionId(unh16(&v["collection_id"])));
    assert_eq!(response.owner, AccountId(unh16(&v["owner"])));
    assert_eq!(response.member, AccountId(unh16(&v["member"])));
    assert_eq!(response.grant, ObjectId(unh32(&v["grant_id"])));
    assert_eq!(response.accept, v["accept"].as_bool().unwrap());
    assert_eq!(response.time_ms, v["time_ms"].as_i64().unwrap());
    outcome(Ok::<(), Error>(()))
}

/// Each file checked from its own contents only.
#[test]
fn every_vector_file_verifies() {
    let mut seen = 0;
    for file in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = file.unwrap().path();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let got = match v["kind"].as_str().unwrap() {
            "member-list" => check_member_list(&v),
            "key-grant" => check_key_grant(&v),
            "share-response" => check_share_response(&v),
            "handle-claim" => check_handle_claim(&v),
            other => panic!("{}: unknown kind {other}", path.display()),
        };
        assert_eq!(got, v["expect"].as_str().unwrap(), "{}", path.display());
        seen += 1;
    }
    assert_eq!(seen, generate().len(), "a vector file without a generator, or the reverse");
}
