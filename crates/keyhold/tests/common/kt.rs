//! Key transparency on loopback for end-to-end tests: a real server
//! publishing every second, three real witnesses, one auditor, and devices
//! with the policy pinned.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Device, Server};

pub struct Witness {
    pub child: Child,
    pub url: String,
    pub vkey: String,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_witness(dir: &Path, name: &str, log: &str) -> Witness {
    let mut child = Command::new(BIN)
        .args(["witness", "--log", log, "--listen", "127.0.0.1:0", "--name", name, "--key"])
        .arg(dir.join(format!("{name}.key")))
        .env("KEYHOLD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let vkey = line.trim().strip_prefix("witness key ").expect("witness did not start").to_owned();
    line.clear();
    out.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening ").expect("witness did not listen").to_owned();
    Witness { child, url, vkey }
}

pub fn http_get(url: &str) -> Vec<u8> {
    let out = Command::new("python3")
        .args(["-c", "import sys,urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Polls `f` until it answers, for at most `secs` seconds.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A checkpoint's signature lines (the log's and the cosignatures).
pub fn signature_lines(note: &[u8]) -> usize {
    String::from_utf8_lossy(note).lines().filter(|l| l.starts_with("\u{2014} ")).count()
}

pub fn checkpoint_size(note: &[u8]) -> u64 {
    String::from_utf8_lossy(note).lines().nth(1).unwrap().parse().unwrap()
}

pub struct World {
    pub dir: PathBuf,
    pub server: Server,
    pub witnesses: Vec<Witness>,
    pub policy: PathBuf,
    pub auditor_key: PathBuf,
    pub config: String,
}

impl World {
    /// A server whose log three witnesses cosign and one auditor may audit;
    /// `policy_extra` adds lines to the devices' policy (ages, delays).
    pub fn new(dir: &Path, policy_extra: &str) -> World {
        // The witnesses pin the log's origin and key from its first answer,
        // so the server starts once before it knows them.
        let first = Server::start_with(dir, "[transparency]\nepoch_secs = 1\n");
        let witnesses: Vec<Witness> = (1..=3).map(|i| start_witness(dir, &format!("witness-{i}"), &first.url)).collect();
        let info: serde_json::Value = serde_json::from_slice(&http_get(&format!("{}/kt/info", first.url))).unwrap();
        let mut first = first;
        first.stop();
        let auditor_key = dir.join("auditor.key");
        let out = Command::new(BIN)
            .args(["audit", "--print-key", "--log", "http://unused", "--key"])
            .arg(&auditor_key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let auditor_vkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let quoted = |items: Vec<&str>| items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "[transparency]\nepoch_secs = 1\nwitnesses = [{}]\nauditors = [\"{auditor_vkey}\"]\n",
            quoted(witnesses.iter().map(|w| w.url.as_str()).collect())
        );
        let server = Server::start_with(dir, &config);
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "origin = {:?}\nlog_key = {:?}\nvrf_key = {:?}\nwitnesses = [{}]\nauditors = [\"{auditor_vkey}\"]\n{policy_extra}\n",
                info["origin"].as_str().unwrap(),
                info["log_vkey"].as_str().unwrap(),
                info["vrf_public_key"].as_str().unwrap(),
                quoted(witnesses.iter().map(|w| w.vkey.as_str()).collect()),
            ),
        )
        .unwrap();
        let world = World { dir: dir.to_owned(), server, witnesses, policy, auditor_key, config };
        // Clients with auditors pinned refuse key changes until an auditor
        // has cosigned: the auditor's first pass, as a deployment runs it.
        world.settle();
        world.audit();
        world
    }

    /// A device with the policy pinned.
    pub fn device(&self, name: &str) -> Device {
        let device = Device::new(&self.dir, name, &self.server);
        std::fs::create_dir_all(&device.home).unwrap();
        std::fs::copy(&self.policy, device.home.join("transparency.toml")).unwrap();
        device
    }

    pub fn checkpoint(&self) -> Vec<u8> {
        http_get(&format!("{}/kt/checkpoint", self.server.url))
    }

    /// Waits until the directory has published everything the server holds
    /// now (two more epochs, each cosigned by every witness).
    pub fn settle(&self) {
        let start = checkpoint_size(&self.checkpoint());
        eventually("two cosigned epochs", 30, || {
            let note = self.checkpoint();
            (checkpoint_size(&note) >= start + 2 && signature_lines(&note) == 1 + self.witnesses.len()).then_some(())
        });
    }

    pub fn audit(&self) -> String {
        let out = Command::new(BIN)
            .args(["audit", "--log", &self.server.url, "--key"])
            .arg(&self.auditor_key)
            .env("KEYHOLD_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "audit: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Restarts the server over the same data with `extra` config (TOML
    /// keys of `[transparency]`).
    pub fn restart(&mut self, extra: &str) {
        self.server.stop();
        // Same port: the devices keep the server's URL.
        let address = self.server.url.trim_start_matches("http://").to_owned();
        self.server = Server::start_with(&self.dir, &format!("listen = \"{address}\"\n{}{extra}\n", self.config));
    }
}

pub fn fails_with(device: &Device, args: &[&str], needle: &str) -> String {
    let out = device.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "keyhold {args:?} should fail verification: {stderr}");
    assert!(stderr.contains(needle), "keyhold {args:?}: expected {needle:?} in: {stderr}");
    stderr
}

pub fn evidence_files(device: &Device) -> Vec<PathBuf> {
    super::walkdir(&device.home.join("evidence"))
}
