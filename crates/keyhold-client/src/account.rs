//! Creating an account and joining it with the recovery key.

use keyhold_core::{AccountId, AccountRootKey, DeviceSecret, KdfParams, RecoveryKey, certify_device, os_rng, wrap_to_device};
use keyhold_proto::{Bytes as B64, CreateAccount, EnrollDevice};
use zeroize::Zeroizing;

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::home::{DeviceConfig, DeviceKeys, Home};

/// Creates a new account with this device as its first device. Returns the
/// recovery key, to show the user once.
pub async fn init(home: &Home, server: &str) -> Result<(AccountId, Zeroizing<String>)> {
    if home.is_initialized() {
        return Err(ClientError::AlreadyInitialized(home.dir().to_owned()));
    }
    let api = Api::new(server)?;
    let mut rng = os_rng();
    let account = AccountId::generate(&mut rng);
    let root = AccountRootKey::generate(&mut rng);
    let device = DeviceSecret::generate(&mut rng);
    let recovery = RecoveryKey::generate(&mut rng);
    let recovery_auth_key = recovery.auth_public_key();
    let locator = recovery.locator();
    let body = CreateAccount {
        account_id: account.to_hex(),
        device_public_keys: B64(device.public().to_bytes()),
        device_certificate: B64(certify_device(&root, account, 0, device.public()).to_vec()),
        device_wrap: B64(wrap_to_device(&root, device.public(), account, 0, &mut rng)?),
        recovery_auth_key: B64(recovery_auth_key.to_vec()),
        recovery_locator: B64(locator.to_vec()),
        recovery_wrap: B64(recovery.wrap(&root, account, 0, KdfParams::DEFAULT, &mut rng)?),
        signature: B64(device.sign_account_creation(account, &recovery_auth_key, &locator).to_vec()),
    };
    api.create_account(&body).await?;
    let config = DeviceConfig {
        server: server.trim_end_matches('/').to_owned(),
        account_id: account.to_hex(),
        device_id: device.id().to_hex(),
    };
    home.save(&config, &DeviceKeys { account, epoch: 0, root, device })?;
    Ok((account, recovery.display()?))
}

/// Joins an existing account on this device with its recovery key.
pub async fn recover(home: &Home, server: &str, recovery_text: &str) -> Result<AccountId> {
    if home.is_initialized() {
        return Err(ClientError::AlreadyInitialized(home.dir().to_owned()));
    }
    let recovery = RecoveryKey::parse(recovery_text).map_err(|e| ClientError::Usage(e.to_string()))?;
    let api = Api::new(server)?;
    let locator = recovery.locator();
    let info = match api.recovery_info(&locator).await {
        Err(ClientError::Server { status: 404, .. }) => {
            return Err(ClientError::Usage(
                "this server has no account for that recovery key; check the key and the server".into(),
            ));
        }
        other => other?,
    };
    let account = AccountId::from_hex(&info.account_id).ok_or_else(|| ClientError::Protocol("account id".into()))?;
    // The root key comes from the recovery wrap, which only the recovery key
    // opens: the server cannot substitute a key of its own (SECURITY A1).
    let root = recovery.unwrap(&info.recovery_wrap.0, account, info.epoch)?;
    let challenge: [u8; 32] = info.challenge.array().ok_or_else(|| ClientError::Protocol("challenge".into()))?;
    let mut rng = os_rng();
    let device = DeviceSecret::generate(&mut rng);
    let body = EnrollDevice {
        device_public_keys: B64(device.public().to_bytes()),
        device_certificate: B64(certify_device(&root, account, info.epoch, device.public()).to_vec()),
        device_wrap: B64(wrap_to_device(&root, device.public(), account, info.epoch, &mut rng)?),
        challenge: B64(challenge.to_vec()),
        signature: B64(recovery.sign_enrollment(account, device.public(), &challenge).to_vec()),
    };
    api.enroll(&locator, &body).await?;
    let config = DeviceConfig {
        server: server.trim_end_matches('/').to_owned(),
        account_id: account.to_hex(),
        device_id: device.id().to_hex(),
    };
    home.save(&config, &DeviceKeys { account, epoch: info.epoch, root, device })?;
    Ok(account)
}
