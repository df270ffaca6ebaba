//! Pairing a new device with an enrolled one over the server as a relay
//! (spec: `devices.md`, "Pairing").
//!
//! The enrolled device (the inviter) shows a one-time code of 10 Crockford
//! base32 characters. Its first 4 name the relay slot, the only part the
//! relay needs; the whole code is the SPAKE2 password. The two devices run
//! SPAKE2 (RustCrypto's `spake2`, Ed25519 group) through the relay, so the
//! relay, which sees only the slot and the SPAKE2 messages, cannot learn the
//! shared key nor finish the exchange offline; an active relay gets one
//! guess of the remaining 30 bits per attempt. From the SPAKE2 key and both
//! messages each side derives: a key confirmation per direction, one AEAD
//! key per direction (each used for exactly one message), and a short
//! safety string the two users compare.

use rand_core::CryptoRng;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::chain::{ChainHead, MAX_DEVICE_NAME, validate_device_name};
use crate::device::{DEVICE_PUBLIC_KEYS_LEN, DevicePublicKeys};
use crate::encoding::{Reader, Writer};
use crate::envelope::{HEADER_LEN, ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::{AccountId, ObjectId};
use crate::kdf::{context, derive};
use crate::secret::AccountRootKey;

/// Characters in a pairing code.
pub const PAIRING_CODE_LEN: usize = 10;
/// Leading characters of the code that name the relay slot.
pub const PAIRING_SLOT_LEN: usize = 4;
/// Length of a SPAKE2 message.
pub const PAKE_MESSAGE_LEN: usize = 33;
/// Length of a key confirmation.
pub const CONFIRMATION_LEN: usize = 32;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// SPAKE2 identities and password prefix. FROZEN.
const INVITER_IDENTITY: &[u8] = b"keyhold v1 2026-11 pairing inviter";
const JOINER_IDENTITY: &[u8] = b"keyhold v1 2026-11 pairing joiner";
const PASSWORD_PREFIX: &[u8] = b"keyhold v1 2026-11 pairing code\0";

const TO_INVITER: u8 = 0x01;
const TO_JOINER: u8 = 0x02;

/// A one-time pairing code, normalized to its 10 upper-case characters.
pub struct PairingCode(Zeroizing<String>);

impl core::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PairingCode({}…, [REDACTED])", self.slot())
    }
}

impl PairingCode {
    /// Draws a fresh code: 50 random bits.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut raw = Zeroizing::new([0u8; PAIRING_CODE_LEN]);
        rng.fill_bytes(raw.as_mut());
        let text: String = raw.iter().map(|b| char::from(*ALPHABET.get(usize::from(b & 0x1f)).unwrap_or(&b'0'))).collect();
        PairingCode(Zeroizing::new(text))
    }

    /// Parses what the user typed: case, dashes and spaces do not matter;
    /// O reads as 0, I and L as 1 (Crockford).
    pub fn parse(text: &str) -> Result<Self> {
        let mut out = Zeroizing::new(String::with_capacity(PAIRING_CODE_LEN));
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&u8::try_from(c).unwrap_or(0)) {
                return Err(Error::InvalidPairingCode("unexpected character"));
            }
            out.push(c);
        }
        if out.len() != PAIRING_CODE_LEN {
            return Err(Error::InvalidPairingCode("wrong length"));
        }
        Ok(PairingCode(out))
    }

    /// The form shown to users: `XXXXX-XXXXX`.
    pub fn display(&self) -> Zeroizing<String> {
        let (a, b) = self.0.split_at(PAIRING_CODE_LEN / 2);
        Zeroizing::new(format!("{a}-{b}"))
    }

    /// The relay slot: the first 4 characters.
    pub fn slot(&self) -> &str {
        self.0.get(..PAIRING_SLOT_LEN).unwrap_or_default()
    }

    fn password(&self) -> Password {
        let mut p = Zeroizing::new(Vec::with_capacity(PASSWORD_PREFIX.len() + PAIRING_CODE_LEN));
        p.extend_from_slice(PASSWORD_PREFIX);
        p.extend_from_slice(self.0.as_bytes());
        Password::new(p.as_slice())
    }
}

/// The new device's side of the exchange, between its first message and the
/// inviter's answer.
pub struct JoinerPake {
    state: Spake2<Ed25519Group>,
    message: [u8; PAKE_MESSAGE_LEN],
}

impl JoinerPake {
    /// Starts the exchange; returns the state and the message to send.
    pub fn start(code: &PairingCode, rng: &mut impl CryptoRng) -> (Self, [u8; PAKE_MESSAGE_LEN]) {
        let (state, message) = Spake2::<Ed25519Group>::start_b_with_rng(
            &code.password(),
            &Identity::new(INVITER_IDENTITY),
            &Identity::new(JOINER_IDENTITY),
            rng,
        );
        let message: [u8; PAKE_MESSAGE_LEN] = message.as_slice().try_into().unwrap_or([0u8; PAKE_MESSAGE_LEN]);
        (JoinerPake { state, message }, message)
    }

    /// Finishes with the inviter's message and checks its key confirmation.
    /// A wrong code, or a relay that changed either message, fails here.
    pub fn finish(self, inviter_message: &[u8], inviter_confirmation: &[u8]) -> Result<PairingKeys> {
        let shared = Zeroizing::new(self.state.finish(inviter_message).map_err(|_| Error::PairingFailed)?);
        let inviter_message: [u8; PAKE_MESSAGE_LEN] = inviter_message.try_into().map_err(|_| Error::PairingFailed)?;
        let keys = PairingKeys::derive(&shared, &inviter_message, &self.message)?;
        keys.check(&keys.inviter_confirmation, inviter_confirmation)?;
        Ok(keys)
    }
}

/// The inviter's answer to one joiner message: its own SPAKE2 message and
/// key confirmation, and the keys of this attempt.
pub fn inviter_respond(
    code: &PairingCode,
    joiner_message: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(PairingKeys, [u8; PAKE_MESSAGE_LEN])> {
    let (state, message) = Spake2::<Ed25519Group>::start_a_with_rng(
        &code.password(),
        &Identity::new(INVITER_IDENTITY),
        &Identity::new(JOINER_IDENTITY),
        rng,
    );
    let message: [u8; PAKE_MESSAGE_LEN] = message.as_slice().try_into().map_err(|_| Error::PairingFailed)?;
    let shared = Zeroizing::new(state.finish(joiner_message).map_err(|_| Error::PairingFailed)?);
    let joiner_message: [u8; PAKE_MESSAGE_LEN] = joiner_message.try_into().map_err(|_| Error::PairingFailed)?;
    Ok((PairingKeys::derive(&shared, &message, &joiner_message)?, message))
}

/// Keys of one pairing attempt, derived from the SPAKE2 key and transcript.
pub struct PairingKeys {
    inviter_confirmation: [u8; CONFIRMATION_LEN],
    joiner_confirmation: [u8; CONFIRMATION_LEN],
    to_inviter: Zeroizing<[u8; 32]>,
    to_joiner: Zeroizing<[u8; 32]>,
    safety: String,
}

impl core::fmt::Debug for PairingKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PairingKeys([REDACTED])")
    }
}

impl PairingKeys {
    /// Derives every key of an attempt: each output is
    /// `BLAKE3-derive_key(context, shared ‖ inviter message ‖ joiner message)`.
    pub fn derive(
        shared: &[u8],
        inviter_message: &[u8; PAKE_MESSAGE_LEN],
        joiner_message: &[u8; PAKE_MESSAGE_LEN],
    ) -> Result<Self> {
        let shared: &[u8; 32] = shared.try_into().map_err(|_| Error::PairingFailed)?;
        let d = |ctx: &str| *derive(ctx, &[shared, inviter_message, joiner_message]).expose_secret();
        let safety_bytes = d(context::PAIRING_SAFETY);
        let number = u64::from_be_bytes(safety_bytes.first_chunk::<8>().copied().unwrap_or_default()) % 100_000_000;
        Ok(PairingKeys {
            inviter_confirmation: d(context::PAIRING_INVITER_CONFIRMATION),
            joiner_confirmation: d(context::PAIRING_JOINER_CONFIRMATION),
            to_inviter: Zeroizing::new(d(context::PAIRING_TO_INVITER)),
            to_joiner: Zeroizing::new(d(context::PAIRING_TO_JOINER)),
            safety: format!("{:04}-{:04}", number / 10_000, number % 10_000),
        })
    }

    fn check(&self, expected: &[u8; CONFIRMATION_LEN], received: &[u8]) -> Result<()> {
        if received.len() == CONFIRMATION_LEN && bool::from(expected.as_slice().ct_eq(received)) {
            Ok(())
        } else {
            Err(Error::PairingFailed)
        }
    }

    /// What the inviter sends to prove it knows the key.
    pub fn inviter_confirmation(&self) -> [u8; CONFIRMATION_LEN] {
        self.inviter_confirmation
    }

    /// What the joiner sends to prove it knows the key.
    pub fn joiner_confirmation(&self) -> [u8; CONFIRMATION_LEN] {
        self.joiner_confirmation
    }

    /// Checks the joiner's confirmation (on the inviter).
    pub fn check_joiner_confirmation(&self, received: &[u8]) -> Result<()> {
        self.check(&self.joiner_confirmation, received)
    }

    /// The 8-digit string both users compare, as `NNNN-NNNN`.
    pub fn safety_string(&self) -> &str {
        &self.safety
    }

    /// Seals the joiner's introduction for the inviter.
    pub fn seal_joiner_hello(&self, hello: &JoinerHello) -> Result<Vec<u8>> {
        seal(&self.to_inviter, TO_INVITER, hello.encode()?)
    }

    /// Opens the joiner's introduction (on the inviter).
    pub fn open_joiner_hello(&self, sealed: &[u8]) -> Result<JoinerHello> {
        JoinerHello::decode(&open(&self.to_inviter, TO_INVITER, sealed)?)
    }

    /// Seals the inviter's welcome for the joiner.
    pub fn seal_welcome(&self, welcome: &Welcome) -> Result<Vec<u8>> {
        seal(&self.to_joiner, TO_JOINER, welcome.encode())
    }

    /// Opens the inviter's welcome (on the joiner).
    pub fn open_welcome(&self, sealed: &[u8]) -> Result<Welcome> {
        Welcome::decode(&open(&self.to_joiner, TO_JOINER, sealed)?)
    }
}

fn aad(direction: u8) -> [u8; HEADER_LEN + 1] {
    let mut w = Writer::with_capacity(HEADER_LEN + 1);
    write_header(&mut w, ObjectType::PairingMessage);
    w.u8(direction);
    let mut out = [0u8; HEADER_LEN + 1];
    out.copy_from_slice(w.as_slice());
    out
}

/// `header ‖ direction ‖ AES-256-GCM(key, nonce 0, aad = header ‖ direction)`:
/// each key seals exactly one message, so the fixed nonce is never reused.
fn seal(key: &[u8; 32], direction: u8, plaintext: Zeroizing<Vec<u8>>) -> Result<Vec<u8>> {
    let aad = aad(direction);
    let mut buf = plaintext.to_vec();
    aead::seal(key, [0u8; NONCE_LEN], &aad, &mut buf)?;
    let mut out = Vec::with_capacity(aad.len() + buf.len());
    out.extend_from_slice(&aad);
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open(key: &[u8; 32], direction: u8, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut r = Reader::new(sealed);
    read_header(&mut r, ObjectType::PairingMessage)?;
    if r.u8()? != direction {
        return Err(Error::ContextMismatch("pairing message direction"));
    }
    let mut buf = Zeroizing::new(r.rest().to_vec());
    if buf.len() < TAG_LEN {
        return Err(Error::Truncated);
    }
    let plain = aead::open(key, [0u8; NONCE_LEN], &aad(direction), &mut buf).map_err(|_| Error::PairingFailed)?;
    Ok(Zeroizing::new(plain.to_vec()))
}

/// What the joiner tells the inviter: its public keys and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinerHello {
    /// The new device's public keys.
    pub device: DevicePublicKeys,
    /// Its name.
    pub name: String,
}

impl JoinerHello {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        validate_device_name(&self.name)?;
        let mut w = Writer::with_capacity(DEVICE_PUBLIC_KEYS_LEN + 2 + self.name.len());
        w.bytes(&self.device.to_bytes());
        w.short_bytes(self.name.as_bytes())?;
        Ok(Zeroizing::new(w.into_vec()))
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let device = DevicePublicKeys::from_bytes(r.take(DEVICE_PUBLIC_KEYS_LEN)?)?;
        let name = core::str::from_utf8(r.short_bytes(MAX_DEVICE_NAME, "device name")?)
            .map_err(|_| Error::Malformed("device name"))?
            .to_owned();
        validate_device_name(&name)?;
        r.finish()?;
        Ok(JoinerHello { device, name })
    }
}

/// What the inviter gives the joiner once both users accepted: the account,
/// its current root key, and the chain head that enrolls the joiner (which
/// the joiner pins, so the server cannot show it another chain).
pub struct Welcome {
    /// The account.
    pub account: AccountId,
    /// The account key epoch of `root`.
    pub epoch: u32,
    /// The account root key of that epoch.
    pub root: AccountRootKey,
    /// The chain entry that enrolls the joiner.
    pub head: ChainHead,
}

impl core::fmt::Debug for Welcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Welcome({}, epoch {}, {:?}, [REDACTED])", self.account, self.epoch, self.head)
    }
}

impl Welcome {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(16 + 4 + 32 + 8 + 32);
        w.bytes(self.account.as_bytes())
            .u32(self.epoch)
            .bytes(self.root.expose_secret())
            .u64(self.head.seq)
            .bytes(self.head.id.as_bytes());
        Zeroizing::new(w.into_vec())
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let account = AccountId(r.array()?);
        let epoch = r.u32()?;
        let root = AccountRootKey::from_bytes(r.array()?);
        let head = ChainHead { seq: r.u64()?, id: ObjectId(r.array()?) };
        r.finish()?;
        Ok(Welcome { account, epoch, root, head })
    }
}
