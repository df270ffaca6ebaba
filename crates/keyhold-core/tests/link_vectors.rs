//! Link shares (spec: `docs/spec/links.md`): the vectors in
//! `docs/spec/link-vectors/`, checked both ways
//! (`KEYHOLD_UPDATE_VECTORS=1` rewrites them after a deliberate change).
//!
//! A second sealer lives here, written from the spec with RustCrypto's
//! `aes-gcm` and `hkdf` and the `argon2` crate: every `ok` vector's object
//! must come out of it byte for byte as out of the reference, and the
//! negative vectors that need a creator breaking the rules (unsafe paths,
//! bad padding) are made with it. Reading each file checks the recorded
//! intermediate values (Argon2id salt and output, keys, header, metadata
//! plaintext) with this second implementation, then opens the object with
//! the reference and compares the outcome with `expect`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use keyhold_core::{
    Error, KdfParams, LinkEntry, LinkEntryKind, LinkFragment, LinkId, LinkKind, LinkMeta, LinkSecret, open_link, padme, seal_link,
};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000_000;
const SECRET: [u8; 32] = [0x42; 32];
const ID: LinkId = LinkId([0x5a; 16]);
const PASSWORD: &str = "correct horse battery staple";

#[path = "support/vector_files.rs"]
mod vector_files;

use vector_files::{check_generated, h, unh};

fn xof(spec: &str) -> Vec<u8> {
    let mut parts = spec.splitn(3, ':');
    assert_eq!(parts.next(), Some("xof"));
    let label = parts.next().unwrap();
    let len: usize = parts.next().unwrap().parse().unwrap();
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(label.as_bytes()).finalize_xof().fill(&mut out);
    out
}

// ------------------------------------------------- the second implementation

fn hkdf(salt: &[u8], ikm: &[u8], info: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    ::hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm).expand(info.as_bytes(), &mut out).unwrap();
    out
}

struct Keys {
    argon2_salt: Option<Vec<u8>>,
    argon2_output: Option<Vec<u8>>,
    metadata: Vec<u8>,
    content: Vec<u8>,
}

fn keys(id: &[u8], secret: &[u8], password: Option<(&[u8], [u32; 3])>) -> Keys {
    let (ikm, argon2_salt, argon2_output) = match password {
        None => (secret.to_vec(), None, None),
        Some((password, [m, t, p])) => {
            let salt = hkdf(id, secret, "keyhold v1 2026-12 link password salt", 16);
            let params = argon2::Params::new(m, t, p, Some(32)).unwrap();
            let mut out = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(password, &salt, &mut out)
                .unwrap();
            ([out.as_slice(), secret].concat(), Some(salt), Some(out.to_vec()))
        }
    };
    Keys {
        argon2_salt,
        argon2_output,
        metadata: hkdf(id, &ikm, "keyhold v1 2026-12 link metadata key", 32),
        content: hkdf(id, &ikm, "keyhold v1 2026-12 link content key", 32),
    }
}

fn seal(key: &[u8], nonce: [u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).unwrap();
    let mut buf = plaintext.to_vec();
    let tag = cipher.encrypt_inout_detached(&nonce.into(), aad, buf.as_mut_slice().into()).unwrap();
    buf.extend_from_slice(&tag);
    buf
}

fn header(id: &[u8], password: Option<[u32; 3]>, sealed_metadata_len: usize) -> Vec<u8> {
    let mut out = b"KHLD\x01\x01\x0a".to_vec();
    out.extend_from_slice(id);
    let (mode, params) = match password {
        None => (1u8, [0; 3]),
        Some(p) => (2u8, p),
    };
    out.push(mode);
    for v in params {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&u32::try_from(sealed_metadata_len).unwrap().to_be_bytes());
    out
}

/// A whole link object from a (padded) metadata plaintext and the content,
/// as the spec describes it.
fn seal_raw(id: &[u8], keys: &Keys, password: Option<[u32; 3]>, metadata: &[u8], content: &[u8]) -> Vec<u8> {
    let aad = header(id, password, metadata.len() + 16);
    let mut out = aad.clone();
    out.extend(seal(&keys.metadata, [0; 12], &aad, metadata));
    let padded_len = usize::try_from(padme(u64::try_from(content.len()).unwrap())).unwrap();
    let mut padded = content.to_vec();
    padded.resize(padded_len, 0);
    let segments: Vec<&[u8]> = if padded.is_empty() { vec![&[]] } else { padded.chunks(65_536).collect() };
    for (i, segment) in segments.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&u64::try_from(i).unwrap().to_be_bytes());
        nonce[11] = u8::from(i + 1 == segments.len());
        out.extend(seal(&keys.content, nonce, &aad, segment));
    }
    out
}

/// The metadata plaintext, written from the spec: fields, then zero bytes
/// up to the Padmé length.
fn metadata_plaintext(meta: &Value) -> Vec<u8> {
    let kind = |k: &Value| if k.as_str().unwrap() == "file" { 1u8 } else { 2 };
    let mut out = meta["expires_ms"].as_i64().unwrap().to_be_bytes().to_vec();
    out.push(kind(&meta["kind"]));
    let name = meta["name"].as_str().unwrap().as_bytes();
    out.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    out.extend_from_slice(name);
    let entries = meta["entries"].as_array().unwrap();
    out.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_be_bytes());
    for e in entries {
        out.push(kind(&e["kind"]));
        let path = e["path"].as_str().unwrap().as_bytes();
        out.extend_from_slice(&u16::try_from(path.len()).unwrap().to_be_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&e["size"].as_u64().unwrap().to_be_bytes());
        out.extend_from_slice(&u32::try_from(e["mode"].as_u64().unwrap()).unwrap().to_be_bytes());
    }
    let padded = usize::try_from(padme(u64::try_from(out.len()).unwrap())).unwrap();
    out.resize(padded, 0);
    out
}

fn contents(meta: &Value) -> Vec<Vec<u8>> {
    meta["entries"].as_array().unwrap().iter().map(|e| e["content"].as_str().map(xof).unwrap_or_default()).collect()
}

// ------------------------------------------------------------- reference

fn to_meta(v: &Value) -> LinkMeta {
    let kind = |k: &Value| k.as_str().unwrap() == "file";
    LinkMeta {
        expires_ms: v["expires_ms"].as_i64().unwrap(),
        kind: if kind(&v["kind"]) { LinkKind::File } else { LinkKind::Folder },
        name: v["name"].as_str().unwrap().into(),
        entries: v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| LinkEntry {
                path: e["path"].as_str().unwrap().into(),
                kind: if kind(&e["kind"]) { LinkEntryKind::File } else { LinkEntryKind::Folder },
                size: e["size"].as_u64().unwrap(),
                mode: u32::try_from(e["mode"].as_u64().unwrap()).unwrap(),
            })
            .collect(),
    }
}

fn params_of(v: &Value) -> Option<[u32; 3]> {
    let a = v.get("argon2")?;
    Some(["memory_kib", "iterations", "parallelism"].map(|f| u32::try_from(a[f].as_u64().unwrap()).unwrap()))
}

fn error_name(e: &Error) -> String {
    format!("{e:?}").split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

// ------------------------------------------------------------ generation

fn file_metadata() -> Value {
    json!({
        "expires_ms": NOW + 86_400_000, "kind": "file", "name": "report.txt",
        "entries": [{"path": "report.txt", "kind": "file", "size": 1000, "mode": 420, "content": "xof:link file:1000"}]
    })
}

fn folder_metadata() -> Value {
    json!({
        "expires_ms": NOW + 86_400_000, "kind": "folder", "name": "holiday",
        "entries": [
            {"path": "a.txt", "kind": "file", "size": 5, "mode": 420, "content": "xof:link a:5"},
            {"path": "empty", "kind": "folder", "size": 0, "mode": 493},
            {"path": "photos", "kind": "folder", "size": 0, "mode": 493},
            {"path": "photos/big.jpg", "kind": "file", "size": 70_000, "mode": 384, "content": "xof:link big:70000"},
            {"path": "photos/zero", "kind": "file", "size": 0, "mode": 420, "content": "xof:link zero:0"}
        ]
    })
}

/// A positive vector: inputs, intermediate values and the object, sealed by
/// the reference (and checked against the second sealer).
fn positive(description: &str, metadata: Value, password: Option<[u32; 3]>) -> Value {
    let fragment = LinkFragment::new(password.is_some(), LinkSecret::from_bytes(SECRET));
    let meta = to_meta(&metadata);
    let content = contents(&metadata);
    let files: Vec<&[u8]> =
        content.iter().zip(&meta.entries).filter(|(_, e)| e.kind == LinkEntryKind::File).map(|(c, _)| c.as_slice()).collect();
    let kdf = password.map(|[m, t, p]| (PASSWORD.as_bytes(), KdfParams { memory_kib: m, iterations: t, parallelism: p }));
    let object = seal_link(ID, &fragment, kdf, &meta, &files).unwrap();
    let k = keys(&ID.0, &SECRET, password.map(|p| (PASSWORD.as_bytes(), p)));
    let plaintext = metadata_plaintext(&metadata);
    assert_eq!(seal_raw(&ID.0, &k, password, &plaintext, &files.concat()), object, "{description}: the two sealers disagree");
    let mut v = json!({
        "description": description,
        "link_id": h(&ID.0), "secret": h(&SECRET), "fragment": fragment.encode().as_str(),
        "now_ms": NOW,
        "metadata": metadata,
        "header": h(&object[..40]),
        "metadata_key": h(&k.metadata), "content_key": h(&k.content),
        "metadata_plaintext": h(&plaintext),
        "content_len": files.iter().map(|f| f.len()).sum::<usize>(),
        "padded_content_len": padme(u64::try_from(files.iter().map(|f| f.len()).sum::<usize>()).unwrap()),
        "object": h(&object),
        "expect": "ok"
    });
    if let Some([m, t, p]) = password {
        v["password"] = json!(PASSWORD);
        v["argon2"] = json!({"memory_kib": m, "iterations": t, "parallelism": p});
        v["argon2_salt"] = json!(h(k.argon2_salt.as_ref().unwrap()));
        v["argon2_output"] = json!(h(k.argon2_output.as_ref().unwrap()));
    }
    v
}

fn negative(base: &Value, description: &str, expect: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut v = base.clone();
    // Derived values belong to the positive case only.
    for field in ["metadata_key", "content_key", "argon2_salt", "argon2_output"] {
        v.as_object_mut().unwrap().remove(field);
    }
    change(&mut v);
    v["description"] = json!(description);
    v["expect"] = json!(expect);
    v
}

fn edit_object(v: &mut Value, f: impl FnOnce(&mut Vec<u8>)) {
    let mut object = unh(&v["object"]);
    f(&mut object);
    v["object"] = json!(h(&object));
}

/// A link whose creator broke the metadata rules, sealed by the second sealer.
fn crafted(base: &Value, description: &str, expect: &str, plaintext: Vec<u8>) -> Value {
    let k = keys(&ID.0, &SECRET, None);
    let object = seal_raw(&ID.0, &k, None, &plaintext, b"");
    let mut v = base.clone();
    v["description"] = json!(description);
    v["expect"] = json!(expect);
    v["metadata_plaintext"] = json!(h(&plaintext));
    v["object"] = json!(h(&object));
    v["header"] = json!(h(&object[..40]));
    for field in ["metadata", "content_len", "padded_content_len", "metadata_key", "content_key"] {
        v.as_object_mut().unwrap().remove(field);
    }
    v
}

fn generate() -> BTreeMap<&'static str, Value> {
    let floor = [64 * 1024, 2, 1];
    let mut out = BTreeMap::new();
    let file = positive(
        "A key link to one 1000-byte file: header, sealed metadata, one content segment (1000 bytes padded to 1024).",
        file_metadata(),
        None,
    );
    let folder = positive(
        "A key link to a folder: a file, an empty folder, a subfolder with a 70,000-byte file (padded content 71,680 bytes: two segments) and an empty file.",
        folder_metadata(),
        None,
    );
    let password = positive(
        "A password link to the same file, Argon2id at the pinned floor (64 MiB, 2 passes, 1 lane).",
        file_metadata(),
        Some(floor),
    );
    let seg = 65_536 + 16;
    let content_start = 40 + usize::try_from(u32::from_be_bytes(unh(&folder["header"])[36..40].try_into().unwrap())).unwrap();

    out.insert(
        "link-wrong-password.json",
        negative(&password, "The password link opened with another password.", "DecryptionFailed", |v| {
            v["password"] = json!("correct horse battery stapler");
        }),
    );
    out.insert(
        "link-no-password.json",
        negative(
            &password,
            "The password link opened with its fragment changed to a key link's (k.): the fragment and the header disagree.",
            "ContextMismatch",
            |v| {
                v["fragment"] = json!(v["fragment"].as_str().unwrap().replacen("p.", "k.", 1));
                v.as_object_mut().unwrap().remove("password");
            },
        ),
    );
    out.insert(
        "link-weak-kdf.json",
        negative(
            &password,
            "The password link with its header's memory cost lowered to 32 MiB: refused before Argon2id runs.",
            "KdfTooWeak",
            |v| {
                edit_object(v, |o| o[24..28].copy_from_slice(&(32u32 * 1024).to_be_bytes()));
            },
        ),
    );
    out.insert(
        "link-costly-kdf.json",
        negative(
            &password,
            "The password link with its header's memory cost raised to 4 GiB: refused before Argon2id runs.",
            "KdfTooCostly",
            |v| {
                edit_object(v, |o| o[24..28].copy_from_slice(&(4u32 << 20).to_be_bytes()));
            },
        ),
    );
    out.insert(
        "link-expired.json",
        negative(&file, "The file link opened at its expiry time.", "LinkExpired", |v| {
            v["now_ms"] = json!(v["metadata"]["expires_ms"]);
        }),
    );
    out.insert(
        "link-other-id.json",
        negative(&file, "The file link's object served under another link id.", "ContextMismatch", |v| {
            v["link_id"] = json!(h(&[0x5b; 16]));
        }),
    );
    out.insert(
        "link-flipped-metadata.json",
        negative(&file, "A bit of the sealed metadata flipped.", "DecryptionFailed", |v| {
            edit_object(v, |o| o[50] ^= 1);
        }),
    );
    out.insert("link-flipped-header.json", negative(&file, "A bit of the header's link id flipped (and the id expected changed alike): the header is the AEAD's associated data and the id the key's salt.", "DecryptionFailed", |v| {
        edit_object(v, |o| o[7] ^= 1);
        let mut id = ID.0;
        id[0] ^= 1;
        v["link_id"] = json!(h(&id));
    }));
    out.insert(
        "link-bad-mode.json",
        negative(&file, "The header's key mode byte set to 3.", "Malformed", |v| {
            edit_object(v, |o| o[23] = 3);
        }),
    );
    out.insert(
        "link-wrong-type.json",
        negative(&file, "The envelope's type byte set to 0x01 (a pack).", "WrongObjectType", |v| {
            edit_object(v, |o| o[6] = 1);
        }),
    );
    out.insert(
        "link-truncated.json",
        negative(&folder, "The folder link without its last 16 bytes (the last segment's tag).", "Truncated", |v| {
            edit_object(v, |o| o.truncate(o.len() - 16));
        }),
    );
    out.insert(
        "link-last-segment-dropped.json",
        negative(
            &folder,
            "The folder link without its last segment: the segment before it was sealed as not last.",
            "Truncated",
            |v| {
                edit_object(v, |o| o.truncate(content_start + seg));
            },
        ),
    );
    out.insert(
        "link-trailing.json",
        negative(&folder, "The folder link with one byte appended.", "TrailingBytes", |v| {
            edit_object(v, |o| o.push(0));
        }),
    );
    out.insert(
        "link-flipped-content.json",
        negative(&folder, "A bit of the folder link's second content segment flipped.", "DecryptionFailed", |v| {
            edit_object(v, |o| o[content_start + seg + 3] ^= 0x80);
        }),
    );

    let mut traversal = file_metadata();
    traversal["kind"] = json!("folder");
    traversal["name"] = json!("evil");
    traversal["entries"] = json!([{"path": "../outside", "kind": "file", "size": 0, "mode": 420}]);
    out.insert(
        "link-path-traversal.json",
        crafted(
            &file,
            "A folder link whose creator named an entry ../outside (sealed correctly): refused.",
            "InvalidName",
            metadata_plaintext(&traversal),
        ),
    );
    let mut absolute = traversal.clone();
    absolute["entries"][0]["path"] = json!("/etc/passwd");
    out.insert(
        "link-absolute-path.json",
        crafted(
            &file,
            "A folder link whose creator named an entry /etc/passwd: refused.",
            "InvalidName",
            metadata_plaintext(&absolute),
        ),
    );
    let mut orphan = traversal.clone();
    orphan["entries"][0]["path"] = json!("sub/file");
    out.insert(
        "link-unlisted-folder.json",
        crafted(&file, "A folder link with an entry sub/file but no folder entry sub.", "Malformed", metadata_plaintext(&orphan)),
    );
    let mut padded = metadata_plaintext(&file_metadata());
    *padded.last_mut().unwrap() = 1;
    out.insert("link-bad-padding.json", crafted(&file, "A file link whose metadata padding is not zero.", "Malformed", padded));

    out.insert("link-file.json", file);
    out.insert("link-folder.json", folder);
    out.insert("link-password.json", password);
    out
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec/link-vectors")
}

#[test]
fn generated_vectors_match_the_files() {
    check_generated(&vectors_dir(), &generate());
}

/// Each file checked from its own contents only.
#[test]
fn every_vector_file_verifies() {
    let mut seen = 0;
    for file in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        seen += 1;
        let id = unh(&v["link_id"]);
        let secret = unh(&v["secret"]);
        let password = v.get("password").and_then(Value::as_str);
        let object = unh(&v["object"]);

        // The fragment encodes the secret.
        let fragment = LinkFragment::parse(v["fragment"].as_str().unwrap()).unwrap();
        assert_eq!(fragment.secret().expose_secret().as_slice(), secret.as_slice(), "{name}");

        // Intermediate values, by the second implementation.
        if v.get("metadata_key").is_some() {
            let k = keys(&id, &secret, password.map(|p| (p.as_bytes(), params_of(&v).unwrap())));
            assert_eq!(h(&k.metadata), v["metadata_key"].as_str().unwrap(), "{name}");
            assert_eq!(h(&k.content), v["content_key"].as_str().unwrap(), "{name}");
            if let Some(salt) = v.get("argon2_salt") {
                assert_eq!(h(k.argon2_salt.as_ref().unwrap()), salt.as_str().unwrap(), "{name}");
                assert_eq!(h(k.argon2_output.as_ref().unwrap()), v["argon2_output"].as_str().unwrap(), "{name}");
            }
        }
        if let Some(meta) = v.get("metadata") {
            assert_eq!(h(&metadata_plaintext(meta)), v["metadata_plaintext"].as_str().unwrap(), "{name}");
        }

        // The reference, as a fetcher runs it.
        let result = open_link(
            &object,
            LinkId(id.clone().try_into().unwrap()),
            &fragment,
            password.map(str::as_bytes),
            v["now_ms"].as_i64().unwrap(),
        );
        let expect = v["expect"].as_str().unwrap();
        match result {
            Ok((meta, opened)) => {
                assert_eq!(expect, "ok", "{name}: opened, but {expect} was expected");
                let m = &v["metadata"];
                assert_eq!(meta, to_meta(m), "{name}");
                assert_eq!(opened, contents(m), "{name}");
                assert_eq!(h(&object[..40]), v["header"].as_str().unwrap(), "{name}");
                // Generation direction: the second sealer makes the same object.
                let files: Vec<u8> = opened.concat();
                let k = keys(&id, &secret, password.map(|p| (p.as_bytes(), params_of(&v).unwrap())));
                assert_eq!(seal_raw(&id, &k, params_of(&v), &unh(&v["metadata_plaintext"]), &files), object, "{name}");
                assert_eq!(padme(v["content_len"].as_u64().unwrap()), v["padded_content_len"].as_u64().unwrap(), "{name}");
            }
            Err(e) => assert_eq!(error_name(&e), expect, "{name}: {e}"),
        }
    }
    assert_eq!(seen, generate().len());
}

/// The `link` fuzz target's fixture is these vectors' (id, secret, time),
/// so its seeds (the vectors' objects) reach the success path.
#[test]
fn fuzz_fixture_matches_the_vectors() {
    use keyhold_core::fuzz::vector::{LINK_ID, LINK_NOW, LINK_SECRET};
    assert_eq!((LINK_ID, LINK_SECRET, LINK_NOW), (ID, SECRET, NOW));
    let seed =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/link/seed-folder-object")).unwrap();
    let fragment = LinkFragment::new(false, LinkSecret::from_bytes(SECRET));
    assert!(open_link(&seed[1..], ID, &fragment, None, NOW).is_ok());
}
