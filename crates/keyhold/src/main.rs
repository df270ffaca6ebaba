//! `keyhold`: the client CLI and `keyhold serve`.
//!
//! Exit codes: 0 success; 1 failure; 2 bad usage; 3 the server's data failed
//! verification (tampering, rollback, fork or injection was detected and
//! nothing was changed locally).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use keyhold_client::{Client, ClientError, DEFAULT_COLLECTION, Home, account, check, devices, ops, sync};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "keyhold",
    version,
    about = "An end-to-end encrypted cloud: the server stores only ciphertext and cannot fool you."
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 the server's data failed verification (nothing was changed locally)."
)]
struct Cli {
    /// Where this device keeps its keys and state [env: KEYHOLD_HOME; default: the platform data directory]
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars or chatter; errors only.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults: SQLite + a blob folder under ./keyhold-data, on 127.0.0.1:8420).
    Serve {
        /// TOML config file (see deploy/keyhold.toml).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Folder for the embedded stores.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Metadata database instead of the embedded SQLite file:
        /// postgres://user:password@host:port/database.
        #[arg(long, env = "KEYHOLD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Check the configuration (TLS files, database, blob store) and exit
        /// without serving or changing anything.
        #[arg(long)]
        check_config: bool,
        #[command(subcommand)]
        action: Option<ServeAction>,
    },
    /// Create a new account with this device; prints the recovery key once.
    Init {
        /// Server URL.
        #[arg(long, env = "KEYHOLD_SERVER")]
        server: String,
        /// Write the recovery key to this file (mode 0600) instead of the screen.
        #[arg(long)]
        recovery_key_file: Option<PathBuf>,
        /// This device's name, as other devices will see it [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// The residency region to keep the account's data in, for good
        /// (`keyhold residency` lists them) [default: the server's].
        #[arg(long)]
        region: Option<String>,
        /// Pin this key transparency policy (the log's key, witnesses,
        /// auditors; see `keyhold verify --help`).
        #[arg(long, env = "KEYHOLD_TRANSPARENCY_POLICY")]
        transparency_policy: Option<PathBuf>,
        /// A human handle others can share with (3 to 32 of a-z, 0-9, '.',
        /// '_', '-'), bound to this account in the transparency log.
        #[arg(long)]
        handle: Option<String>,
    },
    /// Join an existing account on this device with its recovery key.
    Recover {
        /// Server URL.
        #[arg(long, env = "KEYHOLD_SERVER")]
        server: String,
        /// Read the recovery key from this file (else $KEYHOLD_RECOVERY_KEY, else standard input).
        #[arg(long)]
        recovery_key_file: Option<PathBuf>,
        /// This device's name [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Pin this key transparency policy.
        #[arg(long, env = "KEYHOLD_TRANSPARENCY_POLICY")]
        transparency_policy: Option<PathBuf>,
    },
    /// Join an account on this new device with a code shown by an enrolled one (`keyhold devices add`).
    Join {
        /// Server URL.
        #[arg(long, env = "KEYHOLD_SERVER")]
        server: String,
        /// The pairing code (else asked for on standard input).
        #[arg(long)]
        code: Option<String>,
        /// This device's name [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Accept the safety string without asking (for scripts; compare it anyway).
        #[arg(long)]
        yes: bool,
        /// Pin this key transparency policy.
        #[arg(long, env = "KEYHOLD_TRANSPARENCY_POLICY")]
        transparency_policy: Option<PathBuf>,
    },
    /// Key transparency: check that the server shows this account (or a
    /// contact's) the same key history it shows everyone, as witnessed
    /// outside its control.
    ///
    /// The policy pinned with --pin-policy (or at init) names the log's
    /// key, the witnesses (a majority must cosign), the auditors and the
    /// VRF key: `origin`, `log_key`, `vrf_key`, `witnesses`, `quorum`,
    /// `auditors`, `max_age_secs`, `key_change_max_age_secs`,
    /// `max_audit_lag_secs`, `max_publish_delay_secs` (TOML; docs/spec/transparency.md).
    Verify {
        /// A contact's account id (32 hex digits) [default: this account].
        contact: Option<String>,
        /// Pin this policy file on this device first.
        #[arg(long)]
        pin_policy: Option<PathBuf>,
    },
    /// Run an independent witness of a server's transparency log: it
    /// cosigns only checkpoints that extend the last one it cosigned.
    Witness {
        #[command(flatten)]
        of: LogService,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8421")]
        listen: SocketAddr,
        /// The log's verifier key, if known (refuses a log stating another).
        #[arg(long)]
        log_key: Option<String>,
    },
    /// Run an independent auditor of a server's key directory: verifies
    /// every directory step is append-only, then cosigns the checkpoint.
    Audit {
        #[command(flatten)]
        of: LogService,
        /// Keep auditing every --interval seconds.
        #[arg(long)]
        watch: bool,
        /// Seconds between passes with --watch.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// Print the auditor's verifier key and exit.
        #[arg(long)]
        print_key: bool,
    },
    /// Claim a human handle for this account (one per account; others then
    /// share with `HANDLE` or `HANDLE@SERVER`), bound in the transparency log.
    Handle {
        /// The handle: 3 to 32 of a-z, 0-9, '.', '_', '-'.
        name: String,
    },
    /// The collections this account owns or joined, with their members.
    Collections,
    /// Share a collection with another account: its devices are looked up
    /// through key transparency and its device chain, never taken from the
    /// server alone; the collection's keys are sealed to each of them.
    Share {
        /// The collection, as `sync --collection` names it.
        collection: String,
        /// The other account: its handle (`bob` or `bob@SERVER`) or id (32 hex digits).
        account: String,
        /// The member may read but not write.
        #[arg(long)]
        read_only: bool,
    },
    /// Remove a member: the collection moves to a new key epoch sealed to
    /// the remaining members' devices only.
    Unshare {
        /// The collection.
        collection: String,
        /// The member: its handle or account id.
        account: String,
    },
    /// Invitations to other accounts' collections, verified.
    Invitations,
    /// Accept an invitation; then `keyhold sync DIR --collection NAME@OWNER`.
    Accept {
        /// The invitation id (at least 8 hex digits) from `keyhold invitations`.
        id: String,
    },
    /// Decline an invitation.
    Decline {
        /// The invitation id.
        id: String,
    },
    /// The account's devices; add or revoke one.
    Devices {
        #[command(subcommand)]
        action: Option<DevicesAction>,
    },
    /// Manage the recovery key.
    RecoveryKey {
        #[command(subcommand)]
        action: RecoveryKeyAction,
    },
    /// Two-way sync of a folder with a collection.
    Sync {
        /// The folder.
        dir: PathBuf,
        /// Collection name.
        #[arg(long, default_value = DEFAULT_COLLECTION)]
        collection: String,
        /// Keep syncing every --interval seconds.
        #[arg(long)]
        watch: bool,
        /// Seconds between syncs with --watch.
        #[arg(long, default_value_t = 30)]
        interval: u64,
    },
    /// Account, device, folders and usage.
    Status,
    /// The server's public log of compelled disclosures, verified: every
    /// entry signed by the deployment key and linked to the one before.
    Disclosures {
        /// Server URL [default: this device's server].
        #[arg(long, env = "KEYHOLD_SERVER")]
        server: Option<String>,
    },
    /// Where the server keeps data: its signed residency statement (regions
    /// and their stores), checked against the one this device saw before.
    Residency {
        /// Server URL [default: this device's server].
        #[arg(long, env = "KEYHOLD_SERVER")]
        server: Option<String>,
    },
    /// List files in the collection (at its newest revision).
    Ls {
        /// Path in the collection (or a local path inside a synced folder).
        path: Option<String>,
        #[arg(long, default_value = DEFAULT_COLLECTION)]
        collection: String,
    },
    /// The versions of a file.
    Log {
        /// Path in the collection (or a local path inside a synced folder).
        path: String,
        #[arg(long, default_value = DEFAULT_COLLECTION)]
        collection: String,
    },
    /// Restore a version of a file (never overwrites an existing file).
    Restore {
        /// Path in the collection (or a local path inside a synced folder).
        path: String,
        /// Version number from `keyhold log` (default: the newest).
        #[arg(long)]
        version: Option<usize>,
        /// Where to write it (default: the file's own place, if free).
        #[arg(long)]
        to: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_COLLECTION)]
        collection: String,
    },
    /// Decrypt the whole collection into plain files, with the client alone.
    Export {
        /// An empty or new folder.
        dest: PathBuf,
        #[arg(long, default_value = DEFAULT_COLLECTION)]
        collection: String,
    },
    /// Authenticate the whole history and report anything missing or corrupt.
    Check {
        /// Also download and authenticate file content.
        #[arg(long)]
        read_data: bool,
        /// With --read-data: the percentage of chunks to read (1–100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
        sample: u8,
        #[arg(long, default_value = DEFAULT_COLLECTION)]
        collection: String,
    },
    /// Share a local file or folder by link: whoever has the URL opens it,
    /// in a browser or with `keyhold link fetch`, until it expires or is
    /// revoked. The server never sees the key.
    Link {
        #[command(subcommand)]
        action: LinkAction,
    },
}

/// What a witness or an auditor is, and of which log.
#[derive(clap::Args)]
struct LogService {
    /// The log's base URL (its origin and key are pinned on first start).
    #[arg(long)]
    log: String,
    /// This service's signing key file (created if missing).
    #[arg(long)]
    key: PathBuf,
    /// Its state file [default: KEY with .state].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Its key name [default: derived from its public key].
    #[arg(long)]
    name: Option<String>,
}

impl LogService {
    fn state(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| self.key.with_extension("state"))
    }
}

#[derive(Subcommand)]
enum ServeAction {
    /// What the operator does to one account; every action is recorded in
    /// the account's event log, which its devices show.
    #[command(subcommand)]
    Admin(AdminAction),
}

#[derive(Subcommand)]
enum AdminAction {
    /// Write out everything the server holds for ACCOUNT (what a compelled
    /// operator could hand over: ciphertext, ids and counts) and record the
    /// disclosure in the public, signed disclosure log.
    Disclose {
        /// The account id (32 hex digits).
        account: String,
        /// A new folder for the export.
        #[arg(long)]
        out: PathBuf,
        /// The legal basis, as it will appear in the public log.
        #[arg(long)]
        legal_basis: String,
    },
    /// Suspend ACCOUNT: it can still be read, not changed.
    Suspend {
        /// The account id (32 hex digits).
        account: String,
        /// Why, as the account's devices will be told.
        #[arg(long)]
        reason: String,
    },
    /// Lift a suspension.
    Reinstate {
        /// The account id (32 hex digits).
        account: String,
    },
    /// Delete ACCOUNT's data (packs, revisions, folder keys); its devices
    /// can still sign in to learn so.
    Delete {
        /// The account id (32 hex digits).
        account: String,
        /// Why, as the account's devices will be told.
        #[arg(long)]
        reason: String,
    },
    /// Set ACCOUNT's storage quota.
    Quota {
        /// The account id (32 hex digits).
        account: String,
        /// The new quota, in bytes.
        bytes: u64,
    },
}

#[derive(Subcommand)]
enum DevicesAction {
    /// List the devices (the default).
    List,
    /// Show a one-time code to enroll a new device with `keyhold join`.
    Add {
        /// Accept the safety string without asking (for scripts; compare it anyway).
        #[arg(long)]
        yes: bool,
    },
    /// Remove a lost or stolen device; rotates the account's keys.
    Revoke {
        /// The device's name or id (see `keyhold devices`).
        device: String,
    },
}

#[derive(Subcommand)]
enum RecoveryKeyAction {
    /// Issue a new recovery key; the old one stops working.
    Rotate {
        /// Write the new key to this file (mode 0600) instead of the screen.
        #[arg(long)]
        recovery_key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LinkAction {
    /// Seal a local file or folder into a link and print its URL.
    ///
    /// The key is in the URL's fragment (after `#`), which browsers and
    /// this client never send to a server: whoever holds the URL can open
    /// the link, the server cannot. With --password, opening also needs the
    /// password, and the server holds nothing it could guess it from. A
    /// link holds at most 64 MiB; symbolic links and special files in a
    /// folder are left out (and listed).
    Create {
        /// The file or folder to share.
        path: PathBuf,
        /// How long the link opens: 30m, 12h, 7d, 4w, … (at least 1m, at most 365d).
        #[arg(long, default_value = "7d", value_parser = parse_link_lifetime)]
        expires: Duration,
        /// Protect the link with a password as well (asked for on standard input).
        #[arg(long)]
        password: bool,
        /// Read the password from the first line of this file (implies --password).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List this account's links: id, state, stored size, creation and expiry.
    List,
    /// Revoke a link: it stops opening at once, and the server deletes it.
    Revoke {
        /// The link's id (from `keyhold link list`) or its URL.
        id: String,
    },
    /// Open a link and write its file or folder to DEST; needs no account.
    ///
    /// DEST is a new path, or an existing folder to write the link's file
    /// or folder into (by its own name). Nothing is written unless the
    /// whole link verifies, and nothing existing is ever replaced.
    Fetch {
        /// The link's URL, including the part after `#`.
        url: String,
        /// Where to write it.
        dest: PathBuf,
        /// For a password link: read the password from the first line of this file (else it is asked for).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// `--expires`: a duration such as 30m, 12h, 7d or 4w, from one minute to 365 days.
fn parse_link_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(text).map_err(|e| format!("{e} (write it like 30m, 12h, 7d or 4w)"))?;
    if lifetime < Duration::from_secs(60) {
        return Err("a link lives at least one minute".into());
    }
    if lifetime > keyhold_client::link::MAX_LINK_LIFETIME {
        return Err("a link lives at most 365 days".into());
    }
    Ok(lifetime)
}

/// A link's password: the first line of `file`, else a line typed on
/// standard input (twice when creating on a terminal). Only the line's end
/// is stripped: the password is the rest, byte for byte, as in a browser.
fn link_password(file: Option<&Path>, confirm: bool) -> anyhow::Result<keyhold_client::link::Zeroizing<String>> {
    use keyhold_client::link::Zeroizing;
    fn first_line(text: &str) -> &str {
        let line = text.split('\n').next().unwrap_or_default();
        line.strip_suffix('\r').unwrap_or(line)
    }
    if let Some(file) = file {
        let text = Zeroizing::new(std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?);
        return Ok(Zeroizing::new(first_line(&text).to_owned()));
    }
    let ask = |prompt: &str| -> anyhow::Result<Zeroizing<String>> {
        if std::io::stdin().is_terminal() {
            eprint!("{prompt}");
        }
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line)?;
        Ok(Zeroizing::new(first_line(&line).to_owned()))
    };
    let password = ask("Link password: ")?;
    if confirm && std::io::stdin().is_terminal() && *ask("Repeat the password: ")? != *password {
        bail!("the two passwords differ; nothing was shared");
    }
    Ok(password)
}

fn unix_time(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// `keyhold link list|create|revoke` (fetch needs no account: see `run`).
async fn link(home: &Home, action: LinkAction, json: bool) -> anyhow::Result<()> {
    match action {
        LinkAction::Create { path, expires, password, password_file } => {
            let password = match (password, &password_file) {
                (false, None) => None,
                (_, file) => Some(link_password(file.as_deref(), true)?),
            };
            let client = open_client(home).await?;
            let created = keyhold_client::link::create(&client, &path, expires, password).await?;
            for (p, why) in &created.skipped {
                eprintln!("left out {p}: {why}");
            }
            emit(json, &created, |c| {
                let who = if c.password { "Anyone with this URL and the password" } else { "Anyone with this URL" };
                eprintln!(
                    "Link to {} {} ({} file(s), {} bytes) made; it opens until {}. {who} can open it:",
                    c.kind,
                    path.display(),
                    c.files,
                    c.bytes,
                    unix_time(c.expires_at)
                );
                println!("{}", c.url);
            });
        }
        LinkAction::List => {
            let client = open_client(home).await?;
            let links = keyhold_client::link::list(&client).await?;
            emit(json, &links, |links| {
                if links.is_empty() {
                    println!("no links (make one with `keyhold link create PATH`)");
                }
                for l in links {
                    println!(
                        "{}  {:<7}  {:>10} bytes  created {}  expires {}",
                        l.id,
                        l.state,
                        l.size,
                        unix_time(l.created_at),
                        unix_time(l.expires_at)
                    );
                }
            });
        }
        LinkAction::Revoke { id } => {
            let client = open_client(home).await?;
            let revoked = keyhold_client::link::revoke(&client, &id).await?;
            emit(json, &serde_json::json!({ "revoked": revoked }), |_| {
                eprintln!("Link {revoked} revoked: it no longer opens, and the server deleted it.")
            });
        }
        LinkAction::Fetch { .. } => unreachable!("handled before the home is located"),
    }
    Ok(())
}

/// `keyhold link fetch`: needs no account and no home.
async fn link_fetch(url: &str, dest: &Path, password_file: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let fetched = keyhold_client::link::fetch(url, dest, || {
        link_password(password_file, false).map_err(|e| ClientError::Usage(format!("{e:#}")))
    })
    .await?;
    emit(json, &fetched, |f| {
        eprintln!("Wrote the {} {} ({} file(s), {} bytes) to {}.", f.kind, f.name, f.files, f.bytes, f.path.display())
    });
    Ok(())
}

/// The terminal side of the pairing ceremony.
struct TerminalCeremony {
    json: bool,
    yes: bool,
}

impl devices::Ceremony for TerminalCeremony {
    fn show_code(&mut self, code: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "code": code }));
        } else {
            eprintln!("On the new device, run `keyhold join` and enter this code (valid 10 minutes, once):\n\n    {code}\n");
            if std::io::stderr().is_terminal() {
                if let Ok(qr) = qrcode::QrCode::new(code.as_bytes()) {
                    eprintln!("{}", qr.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build());
                }
            }
            eprintln!("Waiting for the new device…");
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }

    fn confirm(&mut self, peer: &str, safety: &str) -> bool {
        eprintln!("Pairing with {peer}. Safety string: {safety}");
        if self.yes {
            eprintln!("(accepted with --yes; the other screen must show the same string)");
            return true;
        }
        eprint!("Does the other screen show exactly {safety}? [y/N] ");
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
    }
}

/// The server a command names, else this device's own.
fn server_or_own(home: &Home, server: Option<String>) -> anyhow::Result<String> {
    match server {
        Some(s) => Ok(s),
        None if home.is_initialized() => Ok(home.load()?.0.server),
        None => bail!("no server: pass --server URL (or set KEYHOLD_SERVER)"),
    }
}

/// Opens the client and tells the user about device changes and alarms.
async fn open_client(home: &Home) -> anyhow::Result<Client> {
    let client = Client::open(home).await?;
    for alarm in &client.alarms {
        eprintln!("keyhold: ALARM: {alarm}");
    }
    for notice in &client.notices {
        eprintln!("keyhold: notice: {notice}");
    }
    Ok(client)
}

fn read_secret_line(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        std::env::var("KEYHOLD_LOG").unwrap_or_else(|_| if cli.quiet { "error".into() } else { "warn,keyhold=info".into() });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyhold: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyhold: {e:#}");
            // Data a verified revision names but the server does not return
            // is tampering too: an honest server stores every acknowledged pack.
            let integrity = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<ClientError>(),
                    Some(
                        ClientError::Integrity(_)
                            | ClientError::MissingBlob(_)
                            | ClientError::Damaged(_)
                            | ClientError::Withheld(_)
                            | ClientError::Transparency { .. }
                    )
                )
            });
            ExitCode::from(if integrity { 3 } else { 1 })
        }
    }
}

fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T)) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        human(value);
    }
}

async fn collection_path(client: &Client, path: &str) -> anyhow::Result<String> {
    let local = Path::new(path);
    if local.is_absolute() || local.exists() {
        if let Some((_, rel)) = ops::locate(client, local).await? {
            return Ok(rel);
        }
    }
    Ok(path.trim_matches('/').to_owned())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let progress = !cli.quiet && !cli.json && std::io::stderr().is_terminal();
    if let Command::Serve { config, listen, data, database_url, check_config, action } = cli.command {
        if let Some(ServeAction::Admin(action)) = action {
            return admin(config, data, database_url, action, cli.json).await;
        }
        return serve(config, listen, data, database_url, check_config).await;
    }
    match cli.command {
        Command::Witness { of, listen, log_key } => return witness(of, listen, log_key).await,
        Command::Audit { of, watch, interval, print_key } => {
            let options = keyhold_client::audit::AuditOptions { state: of.state(), log: of.log, key: of.key, name: of.name };
            return audit(&options, watch, interval, print_key, cli.json).await;
        }
        Command::Link { action: LinkAction::Fetch { url, dest, password_file } } => {
            return link_fetch(&url, &dest, password_file.as_deref(), cli.json).await;
        }
        _ => {}
    }
    let home = Home::locate(cli.home.clone())?;
    match cli.command {
        Command::Witness { .. } | Command::Audit { .. } => unreachable!("handled above"),
        Command::Handle { name } => {
            keyhold_client::account::claim_handle(&home, &name).await?;
            eprintln!(
                "handle {name} claimed; once the transparency log publishes it (an epoch or two), others can share with {name}"
            );
        }
        Command::Collections => {
            let mut client = open_client(&home).await?;
            let list = client.collections().await?;
            emit(cli.json, &list, |list| {
                for c in list {
                    let name = if c.name.is_empty() { "(unshared; named by its folders)".to_owned() } else { c.name.clone() };
                    println!("{name}  {}  {}  owner {}", c.collection, c.role, c.owner);
                    for (member, role) in &c.members {
                        println!("    member {member} ({role})");
                    }
                }
            });
        }
        Command::Share { collection, account, read_only } => {
            let mut client = open_client(&home).await?;
            let contact = client.resolve_contact(&account).await?;
            let role = if read_only { keyhold_core::share::Role::Reader } else { keyhold_core::share::Role::Writer };
            let report = client.share(&collection, contact, role).await?;
            emit(cli.json, &report, |r| {
                println!("shared {collection} with {} as {}; its keys are sealed to these devices,", r.member, r.role);
                println!("as the key transparency log proves them:");
                for (id, name) in &r.devices {
                    println!("    {id}  {name}");
                }
                println!("safety number: {} (compare it with them out of band: keyhold verify {})", r.safety_number, r.member);
            });
        }
        Command::Unshare { collection, account } => {
            let mut client = open_client(&home).await?;
            let contact = client.resolve_contact(&account).await?;
            client.unshare(&collection, contact).await?;
            eprintln!("removed {account} from {collection}; what is written from now on uses a new key it never had");
        }
        Command::Invitations => {
            let client = open_client(&home).await?;
            let (list, alarms) = client.invitations().await?;
            for alarm in &alarms {
                eprintln!("keyhold: ALARM: {alarm}");
            }
            emit(cli.json, &list, |list| {
                if list.is_empty() {
                    println!("no invitations");
                }
                for i in list {
                    println!(
                        "{}  {}  {} from {} ({})  safety number {}",
                        i.id, i.status, i.name, i.owner, i.role, i.safety_number
                    );
                }
            });
        }
        Command::Accept { id } => {
            let mut client = open_client(&home).await?;
            let name = client.accept(&id).await?;
            emit(cli.json, &serde_json::json!({"collection": name}), |_| {
                println!("accepted; sync it with: keyhold sync DIR --collection {name}");
            });
        }
        Command::Decline { id } => {
            let client = open_client(&home).await?;
            client.decline(&id).await?;
            eprintln!("declined");
        }
        Command::Verify { contact, pin_policy } => {
            if let Some(policy) = &pin_policy {
                keyhold_client::transparency::pin_policy(&home, policy)?;
            }
            verify(&home, contact, cli.json).await?;
        }
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Init { server, recovery_key_file, name, region, transparency_policy, handle } => {
            if let Some(policy) = &transparency_policy {
                keyhold_client::transparency::pin_policy(&home, policy)?;
            }
            let name = name.unwrap_or_else(account::default_device_name);
            let (account, recovery) = account::init(&home, &server, &name, region.as_deref()).await?;
            match recovery_key_file {
                Some(file) => {
                    keyhold_client::home::write_private(&file, format!("{}\n", recovery.as_str()).as_bytes())?;
                    eprintln!(
                        "Account {account} created. Recovery key written to {} — keep it offline; it is the only way back in if you lose every device.",
                        file.display()
                    );
                }
                None => {
                    eprintln!("Account {account} created. Your recovery key (shown once; write it down and keep it offline):");
                    println!("{}", recovery.as_str());
                }
            }
            if let Some(handle) = &handle {
                // The account exists whatever happens to the handle: say how
                // to claim one later rather than fail the whole init.
                match keyhold_client::account::claim_handle(&home, handle).await {
                    Ok(()) => eprintln!("Handle {handle} claimed for this account."),
                    Err(e) => eprintln!("keyhold: the handle was not claimed ({e}); claim one later with `keyhold handle NAME`"),
                }
            }
            if cli.json {
                println!("{}", serde_json::json!({"account": account.to_hex(), "home": home.dir()}));
            }
        }
        Command::Recover { server, recovery_key_file, name, transparency_policy } => {
            if let Some(policy) = &transparency_policy {
                keyhold_client::transparency::pin_policy(&home, policy)?;
            }
            let text = match (recovery_key_file, std::env::var("KEYHOLD_RECOVERY_KEY").ok()) {
                (Some(f), _) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
                (None, Some(k)) => k,
                (None, None) => read_secret_line("Recovery key: ")?,
            };
            let name = name.unwrap_or_else(account::default_device_name);
            let account = account::recover(&home, &server, text.trim(), &name).await?;
            emit(cli.json, &serde_json::json!({"account": account.to_hex()}), |_| {
                eprintln!("This device joined account {account}.")
            });
        }
        Command::Join { server, code, name, yes, transparency_policy } => {
            if let Some(policy) = &transparency_policy {
                keyhold_client::transparency::pin_policy(&home, policy)?;
            }
            let code = match code {
                Some(c) => c,
                None => read_secret_line("Pairing code shown by `keyhold devices add`: ")?,
            };
            let name = name.unwrap_or_else(account::default_device_name);
            let mut ceremony = TerminalCeremony { json: cli.json, yes };
            let joined = devices::join(&home, &server, &code, &name, &mut ceremony).await?;
            emit(cli.json, &joined, |d| eprintln!("This device joined the account as \"{}\" ({}).", d.name, d.fingerprint));
        }
        Command::Devices { action } => {
            let mut client = open_client(&home).await?;
            match action.unwrap_or(DevicesAction::List) {
                DevicesAction::List => {
                    let list = devices::list(&client);
                    emit(cli.json, &list, |l| {
                        for d in l {
                            let mark = if d.this_device { "*" } else { " " };
                            let added = if d.added_by == devices::CREATED_ACCOUNT {
                                format!("created the account on {}", d.added)
                            } else {
                                format!("added {} by {}", d.added, d.added_by)
                            };
                            let state = d.revoked.clone().unwrap_or(added);
                            println!("{mark} {:<20} {}  {}", d.name, d.fingerprint, state);
                        }
                        println!("(* this device; the fingerprint is the start of the device id)");
                    });
                }
                DevicesAction::Add { yes } => {
                    let mut ceremony = TerminalCeremony { json: cli.json, yes };
                    let added = devices::add_device(&mut client, &mut ceremony).await?;
                    emit(cli.json, &added, |d| eprintln!("Device \"{}\" ({}) joined the account.", d.name, d.fingerprint));
                }
                DevicesAction::Revoke { device } => {
                    let revoked = client.revoke(&device).await?;
                    emit(cli.json, &revoked, |d| {
                        eprintln!(
                            "Device \"{}\" was revoked: its sessions ended, and everything written from now on uses new keys it never receives.",
                            d.name
                        )
                    });
                }
            }
        }
        Command::RecoveryKey { action: RecoveryKeyAction::Rotate { recovery_key_file } } => {
            let mut client = open_client(&home).await?;
            let recovery = client.rotate_recovery_key().await?;
            match recovery_key_file {
                Some(file) => {
                    keyhold_client::home::write_private(&file, format!("{}\n", recovery.as_str()).as_bytes())?;
                    eprintln!("New recovery key written to {}; the old one no longer works.", file.display());
                }
                None => {
                    eprintln!("Your new recovery key (shown once; the old one no longer works):");
                    println!("{}", recovery.as_str());
                }
            }
        }
        Command::Sync { dir, collection, watch, interval } => {
            if !dir.is_dir() {
                bail!("{} is not a folder; create it first or check the path", dir.display());
            }
            let mut scan = sync::FolderScan::start(&dir)?;
            let mut client = open_client(&home).await?;
            if client.state_rebuilt {
                eprintln!(
                    "keyhold: the local state database was damaged and has been rebuilt from the server; no deletions will be propagated from this sync."
                );
            }
            loop {
                let report = sync::sync(&mut client, scan, &collection, progress).await?;
                emit(cli.json, &report, |r| {
                    if !cli.quiet {
                        eprintln!(
                            "synced {}: {} up, {} down, {} deleted here, {} deleted there, {} conflicts, revision {}",
                            dir.display(),
                            r.uploaded.len(),
                            r.downloaded.len(),
                            r.deleted_locally.len(),
                            r.deleted_remotely.len(),
                            r.conflicts.len(),
                            r.head.map_or("none".into(), |h| h.to_string())
                        );
                    }
                    for c in &r.conflicts {
                        eprintln!("conflict: kept both versions; yours is now {c}");
                    }
                    for (p, why) in &r.skipped {
                        eprintln!("skipped {p}: {why}");
                    }
                });
                if !watch {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
                scan = sync::FolderScan::start(&dir)?;
                // A fresh session each round (sessions are short-lived), and
                // device changes (a revocation, a new key epoch) are seen.
                client = open_client(&home).await?;
            }
        }
        Command::Disclosures { server } => {
            let server = server_or_own(&home, server)?;
            let entries = keyhold_client::deployment::disclosures(&home, &server).await?;
            emit(cli.json, &entries, |entries| {
                if entries.is_empty() {
                    println!("no disclosures logged by {server} (log verified)");
                }
                for e in entries {
                    let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(e.at));
                    let who = e.account.as_deref().map_or(format!("{} account(s)", e.accounts), |a| format!("account {a}"));
                    println!(
                        "#{} {when}: {who}, {} objects ({} bytes); legal basis: {}",
                        e.seq, e.objects, e.bytes, e.legal_basis
                    );
                }
            });
        }
        Command::Residency { server } => {
            let server = server_or_own(&home, server)?;
            let checked = keyhold_client::deployment::check(&home, &server).await?;
            // This device's account's region, when it is an account of that server.
            let mine = match home.is_initialized() && home.load()?.0.server == server {
                true => Some(open_client(&home).await?.api.usage().await?.region),
                false => None,
            };
            emit(cli.json, &serde_json::json!({ "residency": &checked, "account_region": mine }), |_| {
                let s = &checked.statement;
                println!("{} at {server}, statement signed by deployment key {}", s.server, checked.public_key);
                for r in &s.regions {
                    let marks =
                        [(r.name == s.default_region, "default"), (mine.as_deref() == Some(r.name.as_str()), "your account")];
                    let marks: Vec<&str> = marks.iter().filter(|(on, _)| *on).map(|(_, m)| *m).collect();
                    let marks = if marks.is_empty() { String::new() } else { format!(" ({})", marks.join(", ")) };
                    println!("region {}{marks}: metadata in {}; packs in {}", r.name, r.metadata, r.blobs);
                }
                if checked.first_seen {
                    println!("First statement seen from this server: pinned; a later change will be reported.");
                }
            });
            for change in &checked.changes {
                eprintln!("WARNING residency changed: {change}");
            }
        }
        Command::Status => {
            let client = open_client(&home).await?;
            let status = ops::status(&client).await?;
            emit(cli.json, &status, |s| {
                println!("server   {}\naccount  {}\ndevice   {} (one of {} devices)", s.server, s.account, s.device, s.devices);
                println!("storage  {} of {} bytes, in region {}", s.used_bytes, s.quota_bytes, s.region);
                for (folder, rev) in &s.folders {
                    println!("folder   {folder} (revision {})", rev.map_or("none".into(), |r| r.to_string()));
                }
            });
        }
        Command::Ls { path, collection } => {
            let mut client = open_client(&home).await?;
            let prefix = match &path {
                Some(p) => collection_path(&client, p).await?,
                None => String::new(),
            };
            let mut coll = client.collection(&collection).await?;
            let list = ops::ls(&client, &mut coll, &prefix).await?;
            emit(cli.json, &list, |l| {
                for e in l {
                    if e.is_dir {
                        println!("{:>12}  {}/", "-", e.path);
                    } else {
                        println!("{:>12}  {}", e.size, e.path);
                    }
                }
            });
        }
        Command::Log { path, collection } => {
            let mut client = open_client(&home).await?;
            let rel = collection_path(&client, &path).await?;
            let mut coll = client.collection(&collection).await?;
            let versions = ops::log(&client, &mut coll, &rel).await?;
            emit(cli.json, &versions, |vs| {
                println!("version  revision  size          device    written (UTC, by its clock)");
                for v in vs {
                    let size = if v.deleted { "deleted".to_owned() } else { v.size.to_string() };
                    println!(
                        "{:>7}  {:>8}  {:<12}  {}  {}",
                        v.version,
                        v.revision,
                        size,
                        v.device.get(..8).unwrap_or(&v.device),
                        unix_time(v.time_ms.div_euclid(1000))
                    );
                }
            });
        }
        Command::Restore { path, version, to, collection } => {
            let mut client = open_client(&home).await?;
            let located = ops::locate(&client, Path::new(&path)).await?;
            let rel = collection_path(&client, &path).await?;
            let dest = match (to, located) {
                (Some(to), _) => to,
                (None, Some((root, rel))) => rel.split('/').fold(root, |p, c| p.join(c)),
                (None, None) => PathBuf::from(rel.rsplit('/').next().unwrap_or(&rel)),
            };
            let mut coll = client.collection(&collection).await?;
            let v = ops::restore(&client, &mut coll, &rel, version, &dest).await?;
            emit(cli.json, &v, |v| eprintln!("restored version {} of {rel} to {}", v.version, dest.display()));
        }
        Command::Export { dest, collection } => {
            let mut client = open_client(&home).await?;
            let mut coll = client.collection(&collection).await?;
            let files = ops::export(&client, &mut coll, &dest, progress).await?;
            emit(cli.json, &serde_json::json!({"files": files, "dest": dest}), |_| {
                eprintln!("exported {files} files to {}", dest.display())
            });
        }
        Command::Check { read_data, sample, collection } => {
            let mut client = open_client(&home).await?;
            let mut coll = client.collection(&collection).await?;
            let report = check::check(&client, &mut coll, read_data, sample).await?;
            emit(cli.json, &report, |r| {
                println!(
                    "checked {} revisions, {} listings and manifests, {} chunks ({} read, {} bytes)",
                    r.revisions, r.metadata_blobs, r.chunks, r.chunks_read, r.bytes_read
                );
                for p in &r.problems {
                    println!("PROBLEM {p}");
                }
            });
            if !report.problems.is_empty() {
                return Err(ClientError::Damaged(report.problems.len()).into());
            }
        }
        Command::Link { action } => link(&home, action, cli.json).await?,
    }
    Ok(())
}

async fn serve(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
    database_url: Option<String>,
    check_only: bool,
) -> anyhow::Result<()> {
    let mut config = server_config(config, data, database_url)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Ok(token) = std::env::var("KEYHOLD_METRICS_TOKEN") {
        config.metrics_token = Some(token);
    }
    if check_only {
        for line in keyhold_server::check_config(&config).await? {
            println!("ok  {line}");
        }
        println!("configuration ok");
        return Ok(());
    }
    let server = keyhold_server::bind(&config).await?;
    let addr = server.local_addr()?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    // The database URL may hold a password: name the engine only.
    let metadata = if config.database_url.is_some() { "metadata in PostgreSQL, " } else { "" };
    let packs = config.s3.as_ref().map(|s3| format!("packs in S3 bucket {}, ", s3.bucket)).unwrap_or_default();
    eprintln!("keyhold serving on {scheme}://{addr} ({metadata}{packs}data in {})", config.data_dir.display());
    // Tests and scripts read this line to learn a port chosen by the OS.
    println!("listening {scheme}://{addr}");
    server
        .serve(async {
            shutdown_signal().await;
            eprintln!("keyhold: shutting down; finishing requests in flight");
        })
        .await?;
    Ok(())
}

async fn witness(of: LogService, listen: SocketAddr, log_vkey: Option<String>) -> anyhow::Result<()> {
    let options =
        keyhold_server::witness::WitnessOptions { listen, state: of.state(), key: of.key, log: of.log, log_vkey, name: of.name };
    let witness = keyhold_server::witness::bind_witness(&options).await?;
    let addr = witness.local_addr()?;
    eprintln!("keyhold witness of {} on http://{addr}", witness.origin());
    // Tests and operators read these lines: the address and the key to pin.
    println!("witness key {}", witness.vkey());
    println!("listening http://{addr}");
    witness
        .serve(async {
            shutdown_signal().await;
        })
        .await?;
    Ok(())
}

async fn audit(
    options: &keyhold_client::audit::AuditOptions,
    watch: bool,
    interval: u64,
    print_key: bool,
    json: bool,
) -> anyhow::Result<()> {
    if print_key {
        println!("{}", keyhold_client::audit::auditor_vkey(options)?);
        return Ok(());
    }
    loop {
        match keyhold_client::audit::audit_once(options).await {
            Ok(report) => emit(json, &report, |r| {
                println!(
                    "audited {} entries: {} directory step(s) verified append-only (newest epoch {}); cosigned",
                    r.size,
                    r.epochs_verified,
                    r.last_epoch.map_or("none".to_owned(), |e| e.to_string())
                )
            }),
            Err(e) if watch => eprintln!("keyhold: audit: {e}"),
            Err(e) => return Err(e.into()),
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
    }
}

async fn verify(home: &Home, contact: Option<String>, json: bool) -> anyhow::Result<()> {
    let client = open_client(home).await?;
    if let Some(contact) = contact {
        let id = client.resolve_contact(&contact).await?;
        let report = client.verify_contact(id).await?;
        emit(json, &report, |r| {
            println!("account {}: {}", r.account, r.status);
            for v in &r.history {
                println!("  epoch {:>6}  version {:>3}  device chain entry #{}  {}", v.epoch, v.version, v.seq, v.head);
            }
            println!("safety number: {}", r.safety_number);
        });
        return Ok(());
    }
    match &client.transparency {
        None => {
            emit(json, &serde_json::json!({"verified": false, "reason": "no transparency policy pinned"}), |_| {
                println!(
                    "not verified: this device has no key transparency policy pinned (keyhold verify --pin-policy FILE; \
                     the server's operator publishes it)"
                )
            });
        }
        Some(v) => emit(json, v, |v| {
            let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(v.verified_at));
            let state = if v.stale { "STALE" } else { "verified" };
            println!(
                "{state} as of {when}: log of {} entries, directory epoch {}, cosigned by {} witness(es){}",
                v.size,
                v.epoch,
                v.witnesses.len(),
                if v.auditors.is_empty() { String::new() } else { format!(", audited by {}", v.auditors.join(", ")) }
            );
            if let Some(seq) = v.chain_seq {
                println!("this account's device chain is at entry #{seq} in the directory, as your devices wrote it");
            }
        }),
    }
    Ok(())
}

/// The server's configuration, as `keyhold serve` would read it.
fn server_config(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    database_url: Option<String>,
) -> anyhow::Result<keyhold_server::Config> {
    let mut config = match config {
        Some(path) => keyhold_server::Config::from_file(&path)?,
        None => keyhold_server::Config::default(),
    };
    if let Some(data) = data {
        config.data_dir = data;
    }
    if database_url.is_some() {
        config.database_url = database_url;
    }
    Ok(config)
}

async fn admin(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    database_url: Option<String>,
    action: AdminAction,
    json: bool,
) -> anyhow::Result<()> {
    let config = server_config(config, data, database_url)?;
    match action {
        AdminAction::Disclose { account, out, legal_basis } => {
            let done = keyhold_server::admin::disclose(&config, &account, &out, &legal_basis).await?;
            emit(json, &done, |d| {
                println!(
                    "disclosed account {account} (region {}): {} rows and {} packs, {} bytes, in {}",
                    d.region,
                    d.rows,
                    d.packs,
                    d.bytes,
                    out.display()
                );
                println!("logged as entry {} of the public disclosure log; the account's devices will be told", d.entry.seq);
            });
        }
        AdminAction::Suspend { account, reason } => {
            let region = keyhold_server::admin::suspend(&config, &account, Some(&reason)).await?;
            println!("account {account} (region {region}) suspended; recorded in its event log");
        }
        AdminAction::Reinstate { account } => {
            let region = keyhold_server::admin::suspend(&config, &account, None).await?;
            println!("account {account} (region {region}) reinstated; recorded in its event log");
        }
        AdminAction::Delete { account, reason } => {
            let (region, packs) = keyhold_server::admin::delete(&config, &account, &reason).await?;
            println!("data of account {account} (region {region}) deleted, {packs} packs; recorded in its event log");
        }
        AdminAction::Quota { account, bytes } => {
            let region = keyhold_server::admin::set_quota(&config, &account, bytes).await?;
            println!("quota of account {account} (region {region}) set to {bytes} bytes; recorded in its event log");
        }
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM (what systemd and container runtimes send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
