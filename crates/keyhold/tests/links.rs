//! Link shares end to end (SECURITY E1; spec: docs/spec/links.md), against
//! a real `keyhold serve` on loopback: `keyhold link create` on a device,
//! `keyhold link fetch` with no account at all, and the server's page in
//! headless Chromium driven over the W3C WebDriver protocol (chromedriver).
//! A proxy records everything the clients send: no link key, in any
//! encoding, ever reaches the server. Expired, revoked, tampered and
//! wrong-password links fail cleanly: a clear message, a non-zero exit
//! code, and nothing written at the destination (B5).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::proxy::{Proxy, ResponseParts};
use common::{BIN, Content, Device, Server, noise, snapshot};
use serde_json::{Value, json};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `keyhold link fetch` as someone without any account runs it: no home,
/// no server configured.
fn fetch(dir: &Path, url: &str, dest: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["link", "fetch", url])
        .arg(dest)
        .args(extra)
        .env_remove("KEYHOLD_SERVER")
        .env("KEYHOLD_HOME", dir.join("nobody-home"))
        .env("KEYHOLD_LOG", "warn")
        .output()
        .unwrap()
}

fn create(device: &Device, path: &Path, extra: &[&str]) -> String {
    let mut args = vec!["link", "create", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let url = device.ok(&args).trim().to_owned();
    assert!(url.contains("/l/") && url.contains('#'), "not a link URL: {url}");
    url
}

/// The link's id and secret, from its URL.
fn parts(url: &str) -> (String, Vec<u8>) {
    let (address, fragment) = url.split_once('#').unwrap();
    let id = address.rsplit_once("/l/").unwrap().1.to_owned();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&fragment[2..]).unwrap();
    assert_eq!(secret.len(), 32);
    (id, secret)
}

/// Everything in `dir` apart from `keep`: what a failed fetch left behind.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

fn assert_fails_cleanly(out: &Output, code: i32, message: &str, dest: &Path) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).contains(message), "expected {message:?} in: {}", stderr(out));
    assert!(std::fs::symlink_metadata(dest).is_err(), "{} was written", dest.display());
    let parent = dest.parent().unwrap();
    let temporary: Vec<String> = leftovers(parent, &[]).into_iter().filter(|n| n.starts_with(".keyhold-link")).collect();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
}

fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("holiday");
    std::fs::create_dir_all(root.join("photos/raw")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("notes.txt"), b"sunny\n").unwrap();
    std::fs::write(root.join("photos/beach.jpg"), noise(1, 300_000)).unwrap();
    std::fs::write(root.join("photos/raw/zero"), b"").unwrap();
    std::fs::write(root.join("a-b"), noise(2, 70_000)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("notes.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(root.join("a-b"), std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

#[test]
fn e1_a_file_and_a_folder_open_with_link_fetch_and_no_key_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let a = proxy.device(&Device::new(dir.path(), "a", &server));
    a.init(dir.path());

    let file = dir.path().join("report.pdf");
    let content = noise(7, 1_000_000);
    std::fs::write(&file, &content).unwrap();
    let url = create(&a, &file, &["--expires", "2d"]);
    let root = tree(dir.path());
    std::os::unix::fs::symlink("notes.txt", root.join("link-to-notes")).unwrap();
    let out = a.run(&["link", "create", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("left out link-to-notes"), "{}", stderr(&out));
    let folder_url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    std::fs::remove_file(root.join("link-to-notes")).unwrap();

    // A file: to a new path. A folder: into an existing folder, by its name.
    let got = dir.path().join("got.pdf");
    let out = fetch(dir.path(), &url, &got, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(Content(std::fs::read(&got).unwrap()), Content(content.clone()));
    let into = dir.path().join("downloads");
    std::fs::create_dir(&into).unwrap();
    let out = fetch(dir.path(), &folder_url, &into, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "folder");
    assert_eq!(report["files"], 4);
    assert_eq!(snapshot(&into.join("holiday")), snapshot(&root));
    assert!(!dir.path().join("nobody-home").exists(), "fetch needs no home");

    // Nothing is replaced.
    let out = fetch(dir.path(), &url, &got, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert_eq!(Content(std::fs::read(&got).unwrap()), Content(content));

    // The device and every fetch spoke to the server through the proxy
    // (the URLs name it): everything they sent is in its log.
    let log = proxy.log();
    assert_eq!(log.count("POST", "/v1/links"), 2);
    assert_eq!(log.count("GET", "/v1/links/*/object"), 2, "a fetch to a taken path asks for nothing");
    assert_no_key_sent(&log, &[&url, &folder_url], &[]);
}

/// Asserts that no request the proxy recorded (method, path, query,
/// headers, body) carries the secret of any of `urls`, or any of `extra`.
fn assert_no_key_sent(log: &common::proxy::Log, urls: &[&str], extra: &[&[u8]]) {
    let mut forms: Vec<Vec<u8>> = extra.iter().map(|e| e.to_vec()).collect();
    for link in urls {
        let (_, secret) = parts(link);
        forms.extend(encodings(&secret));
        forms.push(link.split_once('#').unwrap().1.as_bytes().to_vec());
    }
    let all = log.all();
    assert!(!all.is_empty(), "nothing was recorded");
    for exchange in all {
        let r = &exchange.request;
        let mut sent = format!("{} {}?{}\n", r.method, r.path, r.query.clone().unwrap_or_default()).into_bytes();
        for (name, value) in &r.headers {
            sent.extend_from_slice(name.as_str().as_bytes());
            sent.extend_from_slice(value.as_bytes());
        }
        sent.extend_from_slice(&r.body);
        for form in &forms {
            assert!(!contains(&sent, form), "{} {} carries a link key ({})", r.method, r.path, String::from_utf8_lossy(form));
        }
    }
}

/// The secret in raw form, lower and upper hex, and every base64 and
/// base64url rendering at each of the three alignments it can have inside
/// a longer encoded string.
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let mut out = vec![secret.to_vec(), hex::encode(secret).into_bytes(), hex::encode_upper(secret).into_bytes()];
    for shift in 0..3usize {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(secret);
        for engine in [&STANDARD, &URL_SAFE] {
            let text = engine.encode(&shifted);
            // Only the characters made of the secret's bits alone.
            let (start, end) = ((shift * 8).div_ceil(6), (shift * 8 + 256) / 6);
            out.push(text.as_bytes()[start..end].to_vec());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn e1_a_password_link_needs_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let a = proxy.device(&Device::new(dir.path(), "a", &server));
    a.init(dir.path());
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, b"the plans\n").unwrap();
    std::fs::write(dir.path().join("pw"), "tr0ub4dor & 3\n").unwrap();
    std::fs::write(dir.path().join("wrong"), "tr0ub4dor & 4\n").unwrap();
    let url = create(&a, &file, &["--password-file", dir.path().join("pw").to_str().unwrap()]);
    assert!(url.split_once('#').unwrap().1.starts_with("p."));

    let dest = dir.path().join("out.txt");
    let wrong = fetch(dir.path(), &url, &dest, &["--password-file", dir.path().join("wrong").to_str().unwrap()]);
    assert_fails_cleanly(&wrong, 1, "the password is wrong", &dest);
    let right = fetch(dir.path(), &url, &dest, &["--password-file", dir.path().join("pw").to_str().unwrap()]);
    assert!(right.status.success(), "{}", stderr(&right));
    assert_eq!(std::fs::read(&dest).unwrap(), b"the plans\n");

    // The password typed on standard input works the same.
    let typed = dir.path().join("typed.txt");
    let mut child = Command::new(BIN)
        .args(["link", "fetch", &url])
        .arg(&typed)
        .env("KEYHOLD_HOME", dir.path().join("nobody-home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"tr0ub4dor & 3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&typed).unwrap(), b"the plans\n");

    // Neither the password nor the secret reached the server.
    assert_no_key_sent(&proxy.log(), &[&url], &[b"tr0ub4dor"]);
}

#[test]
fn e1_expired_and_revoked_links_fail_cleanly_and_free_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "a", &server);
    a.init(dir.path());
    let file = dir.path().join("f.bin");
    std::fs::write(&file, noise(3, 100_000)).unwrap();
    let used = |d: &Device| -> u64 {
        let status: Value = serde_json::from_str(&d.ok(&["--json", "status"])).unwrap();
        status["used_bytes"].as_u64().unwrap()
    };
    let before = used(&a);
    let url = create(&a, &file, &[]);
    let (id, _) = parts(&url);
    let stored = used(&a) - before;
    assert!(stored > 100_000, "the link is charged to the account ({stored} bytes)");

    // Revoked: the object is gone and its bytes are freed; fetch says so.
    let other = Device::new(dir.path(), "mallory", &server);
    other.init(dir.path());
    let out = other.run(&["link", "revoke", &id]);
    assert_eq!(out.status.code(), Some(1), "another account cannot revoke it (G1)");
    assert!(stderr(&out).contains("has no link"), "{}", stderr(&out));
    a.ok(&["link", "revoke", &url]);
    assert_eq!(used(&a), before);
    let dest = dir.path().join("out.bin");
    assert_fails_cleanly(&fetch(dir.path(), &url, &dest, &[]), 1, "expired or was revoked", &dest);
    let list: Value = serde_json::from_str(&a.ok(&["--json", "link", "list"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "revoked");
    assert_eq!(list[0]["size"], 0);

    // Expired, as the server's clock sees it (the operator's clock moved
    // on, as far as this link is concerned): 410, and purged from the quota.
    let url = create(&a, &file, &["--expires", "1h"]);
    let (id, _) = parts(&url);
    server.sql("UPDATE links SET expires_at = 1 WHERE revoked_at IS NULL");
    assert_fails_cleanly(&fetch(dir.path(), &url, &dest, &[]), 1, "expired or was revoked", &dest);
    let list: Value = serde_json::from_str(&a.ok(&["--json", "link", "list"])).unwrap();
    let this = list.as_array().unwrap().iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert_eq!(this["state"], "expired");
    assert_eq!(used(&a), before, "an expired link's object is purged");

    // A lifetime beyond a year, or below a minute, is refused up front.
    for bad in ["366d", "10s", "soon"] {
        let out = a.run(&["link", "create", file.to_str().unwrap(), "--expires", bad]);
        assert_eq!(out.status.code(), Some(2), "--expires {bad}: {}", stderr(&out));
    }
}

/// A hostile (or merely late) server keeps serving a link after its
/// encrypted expiry: the client refuses it all the same. And any altered
/// or cut byte fails the fetch with nothing written.
#[test]
fn e1_b5_the_client_checks_the_encrypted_expiry_and_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let a = Device::new(dir.path(), "a", &server);
    a.init(dir.path());
    let root = tree(dir.path());
    let url = create(&a, &root, &[]);
    let (id, secret) = parts(&url);
    let via_proxy = format!("{}/l/{}", proxy.url, url.split_once("/l/").unwrap().1);
    let dest = dir.path().join("out");

    // The same link as its creator sealed it, but its encrypted expiry passed.
    let meta = keyhold_core::LinkMeta {
        expires_ms: 1_000,
        kind: keyhold_core::LinkKind::File,
        name: "old.txt".into(),
        entries: vec![keyhold_core::LinkEntry {
            path: "old.txt".into(),
            kind: keyhold_core::LinkEntryKind::File,
            size: 3,
            mode: 0o644,
        }],
    };
    let fragment = keyhold_core::LinkFragment::new(false, keyhold_core::LinkSecret::from_bytes(secret.try_into().unwrap()));
    let link_id = keyhold_core::LinkId::from_hex(&id).unwrap();
    let expired = keyhold_core::seal_link(link_id, &fragment, None, &meta, &[b"old"]).unwrap();
    let rule = proxy.answer("GET", "/v1/links/*/object", move |_| ResponseParts::new(200, expired.clone()));
    assert_fails_cleanly(&fetch(dir.path(), &via_proxy, &dest, &[]), 1, "this link has expired", &dest);
    assert_eq!(rule.hits(), 1);
    proxy.remove(&rule);

    // A flipped bit anywhere (here: the last segment's tag, after most of
    // the files were decrypted and written to the temporary folder).
    let rule = proxy.rewrite_response("GET", "/v1/links/*/object", |_, response| {
        let last = response.body.len() - 1;
        response.body[last] ^= 1;
    });
    assert_fails_cleanly(&fetch(dir.path(), &via_proxy, &dest, &[]), 3, "integrity check failed", &dest);
    assert_eq!(rule.hits(), 1);
    proxy.remove(&rule);

    // The connection cut mid-way.
    let rule = proxy.rewrite_response("GET", "/v1/links/*/object", |_, response| {
        response.cut_after = Some(response.body.len() / 2);
    });
    let out = fetch(dir.path(), &via_proxy, &dest, &[]);
    assert_ne!(out.status.code(), Some(0));
    assert_fails_cleanly(&out, out.status.code().unwrap(), "keyhold:", &dest);
    proxy.remove(&rule);

    // Another link's object served under this id.
    let other = create(&a, &dir.path().join("holiday/notes.txt"), &[]);
    let (other_id, _) = parts(&other);
    let rule = proxy.rewrite_request("GET", "/v1/links/*/object", move |req| {
        req.path = format!("/v1/links/{other_id}/object");
    });
    assert_fails_cleanly(&fetch(dir.path(), &via_proxy, &dest, &[]), 3, "integrity check failed", &dest);
    proxy.remove(&rule);

    // Untouched, it opens.
    let out = fetch(dir.path(), &via_proxy, &dest, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(&dest), snapshot(&root));
}

// ----------------------------------------------------------------- browser

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver on a loopback port, and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    downloads: PathBuf,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let chromium = std::env::var("KEYHOLD_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let chromedriver = std::env::var("KEYHOLD_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        for tool in [&chromium, &chromedriver] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the link page is tested in headless Chromium. Install it with \
                 `apt-get install chromium chromium-driver` (as .ci/run does), or point KEYHOLD_CHROMIUM and \
                 KEYHOLD_CHROMEDRIVER at a Chromium and its matching chromedriver."
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // chromedriver says when it listens: read that line, no sleeping.
        let mut reader = BufReader::new(driver.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("started successfully") {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "chromedriver did not start");
        }
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let profile = dir.join("chromium-profile");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let http = reqwest::Client::new();
        let mut browser =
            Browser { driver, base: format!("http://127.0.0.1:{port}"), session: String::new(), http, runtime, downloads };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())],
                "prefs": {
                    "download.default_directory": browser.downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false
                }
            }
        }}});
        let created = browser.call("POST", "/session", capabilities);
        browser.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        let downloads = browser.downloads.to_str().unwrap().to_owned();
        browser.command(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Browser.setDownloadBehavior", "params": {"behavior": "allow", "downloadPath": downloads}}),
        );
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response: Value = self.runtime.block_on(async { request.send().await.unwrap().json().await.unwrap() });
        assert!(response["value"].get("error").is_none(), "WebDriver {method} {path}: {response}");
        response["value"].clone()
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Loads `url` as a new document (by way of a blank page, so that a
    /// URL differing only in its fragment loads again too).
    fn open(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": "about:blank" }));
        self.command("POST", "/url", json!({ "url": url }));
    }

    fn script(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Waits (bounded) until the page's state is one of `states`.
    fn wait_state(&self, states: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.script("return document.body.dataset.state").as_str().unwrap_or_default().to_owned();
            if states.contains(&state.as_str()) {
                return state;
            }
            assert!(Instant::now() < deadline, "the page stayed {state:?}: {}", self.status());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status(&self) -> String {
        self.script("return document.getElementById('status').textContent").as_str().unwrap_or_default().to_owned()
    }

    fn element(&self, css: &str) -> String {
        let found = self.command("POST", "/element", json!({"using": "css selector", "value": css}));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.command("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.command("POST", &format!("/element/{element}/value"), json!({ "text": text }));
    }

    /// Clicks the download of entry `path` and waits (bounded) for the file.
    fn download(&self, path: &str) -> Vec<u8> {
        let name = path.rsplit('/').next().unwrap();
        let file = self.downloads.join(name);
        let _ = std::fs::remove_file(&file);
        self.click(&format!("a.download[data-path=\"{path}\"]"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let partial = leftovers(&self.downloads, &[]).iter().any(|n| n.ends_with(".crdownload"));
            if file.exists() && !partial {
                return std::fs::read(&file).unwrap();
            }
            assert!(Instant::now() < deadline, "{name} was not downloaded: {:?}", leftovers(&self.downloads, &[]));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.runtime.block_on(async { self.http.delete(url).send().await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn e1_links_open_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Everything the device and the browser send goes through the proxy.
    let proxy = Proxy::start(&server);
    let a = proxy.device(&Device::new(dir.path(), "a", &server));
    a.init(dir.path());
    let browser = Browser::start(dir.path());

    // A key link to one file, crossing segment boundaries.
    let file = dir.path().join("report.pdf");
    let content = noise(11, 150_000);
    std::fs::write(&file, &content).unwrap();
    let url = create(&a, &file, &[]);
    browser.open(&url);
    assert_eq!(browser.wait_state(&["ready", "error"]), "ready", "{}", browser.status());
    let shown = browser.script("return document.getElementById('name').textContent");
    assert_eq!(shown, "report.pdf");
    assert_eq!(Content(browser.download("report.pdf")), Content(content.clone()));

    // A password link: the page asks, Argon2id runs in the browser.
    std::fs::write(dir.path().join("pw"), "open sesame\n").unwrap();
    let locked = create(&a, &file, &["--password-file", dir.path().join("pw").to_str().unwrap()]);
    browser.open(&locked);
    assert_eq!(browser.wait_state(&["password", "error"]), "password", "{}", browser.status());
    browser.type_into("#password", "open sesamE");
    browser.click("#open");
    assert_eq!(browser.wait_state(&["ready", "error"]), "error");
    assert!(browser.status().contains("Wrong password"), "{}", browser.status());
    browser.open(&locked);
    assert_eq!(browser.wait_state(&["password", "error"]), "password", "{}", browser.status());
    browser.type_into("#password", "open sesame");
    browser.click("#open");
    assert_eq!(browser.wait_state(&["ready", "error"]), "ready", "{}", browser.status());
    assert_eq!(Content(browser.download("report.pdf")), Content(content));

    // A folder: every entry listed, each file downloadable.
    let root = tree(dir.path());
    let folder = create(&a, &root, &[]);
    browser.open(&folder);
    assert_eq!(browser.wait_state(&["ready", "error"]), "ready", "{}", browser.status());
    let listed = browser.script("return Array.from(document.querySelectorAll('#entries .path')).map(e => e.textContent)");
    assert_eq!(listed, json!(["a-b", "empty/", "notes.txt", "photos/", "photos/beach.jpg", "photos/raw/", "photos/raw/zero"]));
    assert_eq!(Content(browser.download("photos/beach.jpg")), Content(noise(1, 300_000)));
    assert_eq!(browser.download("notes.txt"), b"sunny\n");

    // Revoked: the page says so.
    a.ok(&["link", "revoke", &url]);
    browser.open(&url);
    assert_eq!(browser.wait_state(&["ready", "error"]), "error");
    assert!(browser.status().contains("expired or was revoked"), "{}", browser.status());

    // A fragment cut short opens nothing.
    browser.open(&folder[..folder.len() - 3]);
    assert_eq!(browser.wait_state(&["ready", "error"]), "error");
    assert!(browser.status().contains("incomplete"), "{}", browser.status());

    // The browser asked for the page, its script, Argon2id and the objects,
    // and sent no key, no password and no referrer carrying either.
    let log = proxy.log();
    for (method, path) in [("GET", "/l/*"), ("GET", "/l/assets/link.js"), ("GET", "/l/assets/hash-wasm-argon2.umd.min.js")] {
        assert!(log.count(method, path) > 0, "the browser never asked for {path}");
    }
    assert!(log.count("GET", "/v1/links/*/object") >= 4);
    assert_no_key_sent(&log, &[&url, &locked, &folder], &[b"open sesame", b"open%20sesame", b"open+sesame"]);
}

#[test]
fn the_page_and_its_assets_carry_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        runtime.block_on(async {
            let r = http.get(format!("{}{path}", server.url)).send().await.unwrap();
            (r.status().as_u16(), r.headers().clone(), r.text().await.unwrap())
        })
    };
    let (status, headers, body) = get("/l/0123456789abcdef0123456789abcdef");
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self' 'wasm-unsafe-eval'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(!body.contains("<script>") && body.contains("src=\"assets/link.js\""), "no inline script");
    for asset in ["link.js", "link.css", "hash-wasm-argon2.umd.min.js", "LICENSE-hash-wasm"] {
        let (status, headers, _) = get(&format!("/l/assets/{asset}"));
        assert_eq!(status, 200, "{asset}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    for missing in ["/l/assets/..%2fmain.rs", "/l/assets/other.js", "/l/not-an-id", "/v1/links/zz/object"] {
        assert_eq!(get(missing).0, 404, "{missing}");
    }
    assert_eq!(get("/v1/links/0123456789abcdef0123456789abcdef/object").0, 404);
}
