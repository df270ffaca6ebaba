//! Creating an account and joining it with the recovery key.

use keyhold_core::{
    AccountId, AccountRootKey, ChainChange, ChainEntry, DeviceChain, DeviceSecret, KdfParams, ObjectType, RecoveryKey, Signer,
    os_rng, peek_type, unwrap_on_device, wrap_to_device,
};
use keyhold_proto::{Bytes as B64, CreateAccount, EnrollDevice};
use zeroize::Zeroizing;

use crate::api::Api;
use crate::devices::now_ms;
use crate::error::{ClientError, Result};
use crate::home::{DeviceConfig, DeviceKeys, Home, PinnedChain};

/// A default device name: the host's name.
pub fn default_device_name() -> String {
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "device".to_owned());
    // At most MAX_DEVICE_NAME bytes, cut at a character boundary.
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > keyhold_core::MAX_DEVICE_NAME {
            break;
        }
        out.push(c);
    }
    out
}

fn check_name(name: &str) -> Result<()> {
    keyhold_core::validate_device_name(name).map_err(|_| {
        ClientError::Usage(format!("device name must be 1 to {} bytes without control characters", keyhold_core::MAX_DEVICE_NAME))
    })
}

/// Creates a new account with this device as its first device, in the
/// residency region `region` (the server's default if `None`). Returns the
/// recovery key, to show the user once.
pub async fn init(home: &Home, server: &str, name: &str, region: Option<&str>) -> Result<(AccountId, Zeroizing<String>)> {
    if home.is_initialized() {
        return Err(ClientError::AlreadyInitialized(home.dir().to_owned()));
    }
    check_name(name)?;
    let api = Api::new(server)?;
    let mut rng = os_rng();
    let account = AccountId::generate(&mut rng);
    let root = AccountRootKey::generate(&mut rng);
    let device = DeviceSecret::generate(&mut rng);
    let recovery = RecoveryKey::generate(&mut rng);
    let genesis = ChainEntry::create(account, &device, name, recovery.device().public(), &root, now_ms()).seal(&device)?;
    let body = CreateAccount {
        account_id: account.to_hex(),
        chain_entry: B64(genesis.clone()),
        device_wrap: B64(wrap_to_device(&root, device.public(), account, 0, &mut rng)?),
        recovery_locator: B64(recovery.locator().to_vec()),
        recovery_wrap: B64(recovery.wrap(&root, account, 0, KdfParams::DEFAULT, &mut rng)?),
        region: region.map(str::to_owned),
    };
    api.create_account(&body).await?;
    let config = DeviceConfig {
        server: server.trim_end_matches('/').to_owned(),
        account_id: account.to_hex(),
        device_id: device.id().to_hex(),
        device_name: name.to_owned(),
    };
    home.save_chain(&PinnedChain { entries: vec![B64(genesis)], seen: 0 })?;
    home.save(&config, &DeviceKeys { account, epoch: 0, root, device })?;
    Ok((account, recovery.display()?))
}

/// Joins an existing account on this device with its recovery key: the
/// recovery key signs this device into the account's device chain.
pub async fn recover(home: &Home, server: &str, recovery_text: &str, name: &str) -> Result<AccountId> {
    if home.is_initialized() {
        return Err(ClientError::AlreadyInitialized(home.dir().to_owned()));
    }
    check_name(name)?;
    let recovery = RecoveryKey::parse(recovery_text).map_err(|e| ClientError::Usage(e.to_string()))?;
    let api = Api::new(server)?;
    let locator = recovery.locator();
    let info = match api.recovery_info(&locator).await {
        Err(ClientError::Server { status: 404, .. }) => {
            return Err(ClientError::Usage(
                "this server has no account for that recovery key (or it was replaced); check the key and the server".into(),
            ));
        }
        other => other?,
    };
    let account = AccountId::from_hex(&info.account_id).ok_or_else(|| ClientError::Protocol("account id".into()))?;
    let chain = DeviceChain::verify(account, info.chain.iter().map(|e| e.0.as_slice()))?;
    let recovery_device = recovery.device();
    if chain.recovery() != recovery_device.public() {
        return Err(ClientError::Usage("this recovery key was replaced by a newer one; use the newest recovery key".into()));
    }
    let epoch = chain.epoch();
    if info.epoch != epoch {
        return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("recovery wrap epoch")));
    }
    // The root key comes from a wrap only the recovery key opens, and must
    // match the chain's signed commitment: the server cannot substitute a
    // key of its own (SECURITY A1).
    let root = match peek_type(&info.recovery_wrap.0) {
        Some(ObjectType::RecoveryKeyWrap) => recovery.unwrap(&info.recovery_wrap.0, account, epoch)?,
        _ => unwrap_on_device(&info.recovery_wrap.0, &recovery_device, account, epoch)?,
    };
    chain.check_root_key(epoch, &root)?;
    let mut rng = os_rng();
    let device = DeviceSecret::generate(&mut rng);
    let entry = ChainEntry {
        account,
        seq: chain.head().seq.saturating_add(1),
        prev: chain.head().id,
        time_ms: now_ms(),
        account_epoch: epoch,
        signer: Signer::RecoveryKey,
        change: ChainChange::AddDevice { device: device.public().clone(), name: name.to_owned() },
    }
    .seal(&recovery_device)?;
    let mut verified = chain.clone();
    verified.append(&entry)?;
    let body = EnrollDevice {
        chain_entry: B64(entry.clone()),
        device_wrap: B64(wrap_to_device(&root, device.public(), account, epoch, &mut rng)?),
    };
    match api.enroll(&locator, &body).await {
        Err(ClientError::Server { status: 409, .. }) => {
            return Err(ClientError::Usage(
                "the account's devices changed at the same moment; run `keyhold recover` again".into(),
            ));
        }
        other => other?,
    }
    let config = DeviceConfig {
        server: server.trim_end_matches('/').to_owned(),
        account_id: account.to_hex(),
        device_id: device.id().to_hex(),
        device_name: name.to_owned(),
    };
    let mut entries: Vec<B64> = info.chain;
    entries.push(B64(entry));
    home.save_chain(&PinnedChain { entries, seen: verified.head().seq })?;
    home.save(&config, &DeviceKeys { account, epoch, root, device })?;
    Ok(account)
}

/// Claims `handle` for this device's account: a claim signed by this
/// device, which the key directory then publishes (`docs/spec/sharing.md`,
/// "Handles").
pub async fn claim_handle(home: &Home, handle: &str) -> Result<()> {
    keyhold_core::share::validate_handle(handle).map_err(|_| {
        ClientError::Usage(format!(
            "{handle:?} is not a handle: 3 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    })?;
    let (config, keys) = home.load()?;
    let mut api = Api::new(&config.server)?;
    api.sign_in(keys.account, &keys.device).await?;
    let claim = keyhold_core::share::HandleClaim {
        handle: handle.to_owned(),
        account: keys.account,
        device: keys.device.id(),
        time_ms: now_ms(),
    }
    .seal(&keys.device)?;
    api.put_handle(handle, claim).await?.map_err(|why| ClientError::Usage(format!("handle {handle}: {why}")))
}
