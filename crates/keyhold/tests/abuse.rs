//! HTTP abuse against the real `keyhold serve` process (SECURITY G2): 200
//! concurrent uploads of the largest size the server accepts keep its
//! memory bounded by configuration (upload slots × body limit), not by what
//! clients send, and every request still gets an answer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const BODY_LIMIT: usize = 8 << 20;
const UPLOAD_SLOTS: usize = 4;
const UPLOADS: usize = 200;

/// Peak and current resident memory of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A session token for the device in `home` (the challenge protocol).
async fn session(http: &reqwest::Client, url: &str, home: &Path) -> String {
    let (_, keys) = keyhold_client::Home::locate(Some(home.to_owned())).unwrap().load().unwrap();
    let ids = serde_json::json!({"account_id": keys.account.to_hex(), "device_id": keys.device.id().to_hex()});
    let challenge: serde_json::Value =
        http.post(format!("{url}/v1/auth/challenge")).json(&ids).send().await.unwrap().json().await.unwrap();
    let bytes: [u8; 32] = STANDARD.decode(challenge["challenge"].as_str().unwrap()).unwrap().try_into().unwrap();
    let signature = keys.device.sign_challenge(keys.account, &bytes);
    let body = serde_json::json!({
        "account_id": keys.account.to_hex(),
        "device_id": keys.device.id().to_hex(),
        "challenge": STANDARD.encode(bytes),
        "signature": STANDARD.encode(signature),
    });
    let session: serde_json::Value =
        http.post(format!("{url}/v1/auth/session")).json(&body).send().await.unwrap().json().await.unwrap();
    session["token"].as_str().unwrap().to_owned()
}

#[test]
fn g2_200_concurrent_maximum_size_uploads_keep_server_memory_bounded() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start_with(
        dir.path(),
        &format!("[limits]\nmax_body_bytes = {BODY_LIMIT}\nmax_concurrent_uploads = {UPLOAD_SLOTS}\n"),
    );
    let device = common::Device::new(dir.path(), "a", &server);
    device.init(dir.path());
    let pid = server.pid();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (before, statuses) = runtime.block_on(async {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let token = session(&http, &server.url, &device.home).await;
        let (_, before) = memory(pid);
        // Bodies of exactly the limit, under ids they do not hash to: the
        // server must read each one whole (to hash it) before refusing it.
        let body = bytes::Bytes::from(common::noise(1, BODY_LIMIT));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..UPLOADS {
            let (http, url, token, body) = (http.clone(), server.url.clone(), token.clone(), body.clone());
            tasks.spawn(async move {
                let id = format!("{:064x}", i + 1);
                match http.put(format!("{url}/v1/packs/{id}")).bearer_auth(token).body(body).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            });
        }
        let mut statuses = Vec::new();
        while let Some(status) = tasks.join_next().await {
            statuses.push(status.unwrap());
        }
        (before, statuses)
    });
    let (peak, _) = memory(pid);
    // Every upload was answered, refused for its digest; none crashed or
    // dropped the connection.
    assert_eq!(statuses.len(), UPLOADS);
    assert!(statuses.iter().all(|s| *s == 422), "unexpected answers: {statuses:?}");
    // What the server may hold: every slot's body, plus working room. What
    // clients sent: 200 × 8 MiB = 1.6 GiB.
    let bound = before + u64::try_from(2 * UPLOAD_SLOTS * BODY_LIMIT).unwrap() + (64 << 20);
    eprintln!("server memory: {} MiB before, peak {} MiB, bound {} MiB", before >> 20, peak >> 20, bound >> 20);
    assert!(peak < bound, "server peak memory {} MiB exceeds the bound {} MiB", peak >> 20, bound >> 20);
    // And it still serves.
    device.write("after.txt", b"still here");
    device.sync();
}
