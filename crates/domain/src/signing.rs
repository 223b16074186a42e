//! Authentic messages. Anyone who can write to the orders topic could otherwise order for any
//! buyer (the worker writes an order whether or not Redis holds its reservation), and anyone who
//! can write to the dead-letter topic could have the replayer fail a buyer's order or republish
//! anything to the orders topic. So every order message and every dead letter carries an
//! HMAC-SHA256 of what it says, under a secret the gateway, the worker and the replayer share;
//! a message whose signature does not check out is refused as forged.
//!
//! The signature travels in the header [`SIGNATURE_HEADER`] as `<key id>:<64 hex digits>`. The
//! key id names the secret of the [`Keyring`] it was made with, so a key rotates without a
//! moment when some service refuses what another signs: first every service learns the new key
//! (a keyring verifies with any key it lists), then the signers switch to it, and the old key
//! goes once no message signed with it is left in the topics.
//!
//! What is signed is a [`Signed`]: the kind of message, then each part as its length (8 bytes,
//! big-endian) and its bytes. No two different messages feed the MAC the same bytes, and the
//! signature of a dead letter never passes for that of an order.

use crate::ids::{IdError, KeyId};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use strum::{Display, EnumDiscriminants, EnumString, IntoStaticStr, VariantArray};

/// The header that carries a message's signature.
pub const SIGNATURE_HEADER: &str = "seckill-signature";

/// The shortest secret a keyring takes, in bytes. A deployment needs longer ones (its settings
/// check that), a test or a developer's machine may use short, well-known ones.
pub const MIN_SECRET_BYTES: usize = 16;

/// A MAC keyed with `secret`: where every HMAC-SHA256 of the project starts (the payment
/// webhook's and the messages').
pub fn hmac_sha256(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length")
}

/// What a signature covers. A header the message does not have is signed as empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed<'a> {
    /// A message of the orders topic: its key (the SKU), its payload (the encoded
    /// `OrderRequested`) and its `seckill-replays` header (the replayer's count), none of which
    /// can then be changed.
    Order {
        /// The Kafka key.
        key: &'a [u8],
        /// The payload.
        payload: &'a [u8],
        /// The `seckill-replays` header.
        replays: &'a [u8],
    },
    /// A dead letter: the original key and payload, and the two headers the replayer acts on,
    /// so that a letter decides nothing unless the worker wrote it.
    DeadLetter {
        /// The Kafka key (the original message's).
        key: &'a [u8],
        /// The payload (the original message's bytes).
        payload: &'a [u8],
        /// The `seckill-reason` header.
        reason: &'a [u8],
        /// The `seckill-attempts` header.
        attempts: &'a [u8],
    },
}

/// Feeds one part to `mac`: its length, then its bytes.
fn feed(mac: &mut Hmac<Sha256>, part: &[u8]) {
    mac.update(&(part.len() as u64).to_be_bytes());
    mac.update(part);
}

impl Signed<'_> {
    /// The MAC of the message under `secret`, not yet finalized.
    fn mac(&self, secret: &[u8]) -> Hmac<Sha256> {
        let mut mac = hmac_sha256(secret);
        match *self {
            Signed::Order {
                key,
                payload,
                replays,
            } => {
                for part in [b"order".as_slice(), key, payload, replays] {
                    feed(&mut mac, part);
                }
            }
            Signed::DeadLetter {
                key,
                payload,
                reason,
                attempts,
            } => {
                for part in [b"dead_letter".as_slice(), key, payload, reason, attempts] {
                    feed(&mut mac, part);
                }
            }
        }
        mac
    }
}

/// Why a message's signature was refused: the message is treated as forged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, EnumDiscriminants)]
#[strum_discriminants(
    name(ForgeryKind),
    doc = "What was wrong with a refused signature, without the key id: a metric label.",
    derive(Display, EnumString, IntoStaticStr, VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum Forgery {
    /// No signature header: a producer that does not sign (another application, an older
    /// build, a hand-made message).
    #[error("the message has no {SIGNATURE_HEADER} header")]
    Missing,
    /// A header that is not `<key id>:<64 hex digits>`.
    #[error("the {SIGNATURE_HEADER} header is not <key id>:<64 hex digits>")]
    Malformed,
    /// Signed with a key this service does not list: a forger's, or one a rotation dropped too
    /// early (or added to the signers before this service).
    #[error("signed with key {key_id}, which messages.signing_keys does not list")]
    UnknownKey {
        /// The key id the header names.
        key_id: KeyId,
    },
    /// The signature is not the message's under the key it names: the message was changed, or
    /// signed with another secret.
    #[error("the signature does not match the message under key {key_id}")]
    Mismatch {
        /// The key id the header names.
        key_id: KeyId,
    },
}

impl Forgery {
    /// What was wrong, as a metric label.
    pub fn kind(&self) -> ForgeryKind {
        self.into()
    }

    /// The key id the signature named, when it named one this build can read.
    pub fn key_id(&self) -> Option<&KeyId> {
        match self {
            Forgery::Missing | Forgery::Malformed => None,
            Forgery::UnknownKey { key_id } | Forgery::Mismatch { key_id } => Some(key_id),
        }
    }
}

impl ForgeryKind {
    /// The stable string form (the metric label).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a list of keys was refused. No variant holds a secret: the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No entry at all.
    #[error("lists no key: it must read <key id>:<secret>[,<key id>:<secret>...]")]
    Empty,
    /// An entry without a `:`.
    #[error("entry {entry} is not <key id>:<secret>")]
    Malformed {
        /// The entry's place in the list, from 1.
        entry: usize,
    },
    /// An entry whose key id is not one.
    #[error("entry {entry}: {problem}")]
    BadId {
        /// The entry's place in the list, from 1.
        entry: usize,
        /// What is wrong with its id.
        problem: IdError,
    },
    /// Two entries with one id: which secret it means would be a guess.
    #[error("key id {0} is listed twice")]
    Duplicate(KeyId),
    /// A secret too short to be one.
    #[error("the secret of key {0} is shorter than {MIN_SECRET_BYTES} bytes")]
    Short(KeyId),
    /// The signing key id names no key of the list.
    #[error("{signing:?} is not among the key ids listed ({listed})")]
    UnknownSigningKey {
        /// The signing key id.
        signing: String,
        /// The ids listed, comma-separated.
        listed: String,
    },
}

/// One key: its id and its secret.
struct Key {
    id: KeyId,
    secret: Box<[u8]>,
}

/// The keys of a service: it signs with one (the signing key) and accepts a signature made
/// with any of them. Cheap to clone; its `Debug` shows the key ids only.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<[Key]>,
    signing: usize,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("signing_key_id", &self.signing_key_id().as_str())
            .field(
                "key_ids",
                &self.key_ids().map(KeyId::as_str).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// The keyring of `keys`, a comma-separated list of `<key id>:<secret>` (the secret is
    /// what follows the first `:`, so it may hold `:` but no `,`; blanks around ids and secrets
    /// are ignored), signing with the key `signing_key_id`.
    pub fn parse(keys: &str, signing_key_id: &str) -> Result<Self, KeyringError> {
        let mut parsed: Vec<Key> = Vec::new();
        let entries = keys.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (at, entry) in entries.enumerate() {
            let entry_number = at + 1;
            let (id, secret) = entry.split_once(':').ok_or(KeyringError::Malformed {
                entry: entry_number,
            })?;
            let id = KeyId::parse(id.trim()).map_err(|problem| KeyringError::BadId {
                entry: entry_number,
                problem,
            })?;
            if parsed.iter().any(|key| key.id == id) {
                return Err(KeyringError::Duplicate(id));
            }
            let secret = secret.trim();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(KeyringError::Short(id));
            }
            parsed.push(Key {
                id,
                secret: secret.as_bytes().into(),
            });
        }
        if parsed.is_empty() {
            return Err(KeyringError::Empty);
        }
        let Some(signing) = parsed
            .iter()
            .position(|key| key.id.as_str() == signing_key_id)
        else {
            let listed: Vec<&str> = parsed.iter().map(|key| key.id.as_str()).collect();
            return Err(KeyringError::UnknownSigningKey {
                signing: signing_key_id.to_owned(),
                listed: listed.join(", "),
            });
        };
        Ok(Self {
            keys: parsed.into(),
            signing,
        })
    }

    /// The id of the key this keyring signs with.
    pub fn signing_key_id(&self) -> &KeyId {
        &self.keys[self.signing].id
    }

    /// The ids of every key it accepts, in the order they were listed.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|key| &key.id)
    }

    /// The id and length of its shortest secret.
    pub fn shortest_secret(&self) -> (&KeyId, usize) {
        let shortest = self
            .keys
            .iter()
            .min_by_key(|key| key.secret.len())
            .expect("a keyring holds at least one key");
        (&shortest.id, shortest.secret.len())
    }

    /// The id of a key of this keyring whose secret is also one of `other`'s (say, the
    /// development keys printed in the default settings).
    pub fn shares_a_secret_with(&self, other: &Keyring) -> Option<&KeyId> {
        self.keys
            .iter()
            .find(|key| other.keys.iter().any(|known| known.secret == key.secret))
            .map(|key| &key.id)
    }

    /// The signature header's value for `message`, made with the signing key.
    pub fn sign(&self, message: &Signed<'_>) -> String {
        let key = &self.keys[self.signing];
        let digest = message.mac(&key.secret).finalize().into_bytes();
        format!("{}:{}", key.id, hex::encode(digest))
    }

    /// Checks the signature header `header` (its raw bytes; `None` when the message has none)
    /// against `message` with the key it names, compared in constant time. The id of that key
    /// when it matches.
    pub fn verify(&self, header: Option<&[u8]>, message: &Signed<'_>) -> Result<&KeyId, Forgery> {
        let header = header.ok_or(Forgery::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| Forgery::Malformed)?;
        let (id, signature) = header.split_once(':').ok_or(Forgery::Malformed)?;
        let id = KeyId::parse(id).map_err(|_| Forgery::Malformed)?;
        let signature = hex::decode(signature).map_err(|_| Forgery::Malformed)?;
        if signature.len() != 32 {
            return Err(Forgery::Malformed);
        }
        let Some(key) = self.keys.iter().find(|key| key.id == id) else {
            return Err(Forgery::UnknownKey { key_id: id });
        };
        match message.mac(&key.secret).verify_slice(&signature) {
            Ok(()) => Ok(&key.id),
            Err(_) => Err(Forgery::Mismatch { key_id: id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "2026-01:old-secret-of-sixteen-bytes";
    const NEW: &str = "2026-02:new-secret-of-sixteen-bytes";

    fn ring(keys: &str, signing: &str) -> Keyring {
        Keyring::parse(keys, signing).unwrap()
    }

    fn order<'a>(payload: &'a [u8], replays: &'a [u8]) -> Signed<'a> {
        Signed::Order {
            key: b"phone-1",
            payload,
            replays,
        }
    }

    fn id(id: &str) -> KeyId {
        KeyId::parse(id).unwrap()
    }

    #[test]
    fn a_signed_message_verifies_and_names_its_key() {
        let keys = ring(NEW, "2026-02");
        let message = order(br#"{"v":1}"#, b"");
        let header = keys.sign(&message);
        assert!(header.starts_with("2026-02:"), "{header}");
        assert_eq!(header.len(), "2026-02:".len() + 64);
        assert_eq!(
            keys.verify(Some(header.as_bytes()), &message),
            Ok(&id("2026-02"))
        );
    }

    #[test]
    fn a_rotation_verifies_the_old_key_while_it_is_listed_and_refuses_it_once_dropped() {
        let message = order(br#"{"v":1}"#, b"");
        let before = ring(OLD, "2026-01").sign(&message);
        // Step 1: every service lists both keys, still signing with the old one.
        let learning = ring(&format!("{OLD},{NEW}"), "2026-01");
        assert_eq!(
            learning.verify(Some(before.as_bytes()), &message),
            Ok(&id("2026-01"))
        );
        // Step 2: the signers switch; what the old key signed still verifies.
        let switched = ring(&format!("{NEW}, {OLD}"), "2026-02");
        let after = switched.sign(&message);
        assert!(after.starts_with("2026-02:"));
        assert_eq!(
            switched.verify(Some(before.as_bytes()), &message),
            Ok(&id("2026-01"))
        );
        assert_eq!(
            learning.verify(Some(after.as_bytes()), &message),
            Ok(&id("2026-02"))
        );
        // Step 3: the old key is dropped: what it signed is refused, naming it.
        let dropped = ring(NEW, "2026-02");
        assert_eq!(
            dropped.verify(Some(before.as_bytes()), &message),
            Err(Forgery::UnknownKey {
                key_id: id("2026-01")
            })
        );
        assert_eq!(
            dropped.verify(Some(after.as_bytes()), &message),
            Ok(&id("2026-02"))
        );
    }

    #[test]
    fn a_changed_key_payload_or_replay_count_or_another_secret_does_not_verify() {
        let keys = ring(NEW, "2026-02");
        let message = order(br#"{"v":1,"user_id":"alice"}"#, b"");
        let header = keys.sign(&message);
        let mismatch = Err(Forgery::Mismatch {
            key_id: id("2026-02"),
        });
        let tampered = [
            order(br#"{"v":1,"user_id":"mallory"}"#, b""),
            order(br#"{"v":1,"user_id":"alice"}"#, b"3"),
            Signed::Order {
                key: b"phone-2",
                payload: br#"{"v":1,"user_id":"alice"}"#,
                replays: b"",
            },
            // The same bytes cut elsewhere between the parts.
            Signed::Order {
                key: b"phone-1{",
                payload: br#""v":1,"user_id":"alice"}"#,
                replays: b"",
            },
        ];
        for changed in tampered {
            assert_eq!(
                keys.verify(Some(header.as_bytes()), &changed),
                mismatch,
                "{changed:?}"
            );
        }
        let impostor = ring("2026-02:a-guessed-secret-16-bytes", "2026-02").sign(&message);
        assert_eq!(keys.verify(Some(impostor.as_bytes()), &message), mismatch);
    }

    #[test]
    fn a_dead_letters_signature_is_not_an_orders_and_covers_its_reason_and_attempts() {
        let keys = ring(NEW, "2026-02");
        let letter = |reason: &'static [u8], attempts: &'static [u8]| Signed::DeadLetter {
            key: b"phone-1",
            payload: b"{}",
            reason,
            attempts,
        };
        let header = keys.sign(&letter(b"unknown_sku", b"1"));
        assert!(keys
            .verify(Some(header.as_bytes()), &letter(b"unknown_sku", b"1"))
            .is_ok());
        for changed in [
            letter(b"retries_exhausted", b"1"),
            letter(b"unknown_sku", b"4"),
        ] {
            assert!(matches!(
                keys.verify(Some(header.as_bytes()), &changed),
                Err(Forgery::Mismatch { .. })
            ));
        }
        let as_order = order(b"{}", b"");
        let order_header = keys.sign(&as_order);
        assert_ne!(order_header, header);
        assert!(keys.verify(Some(header.as_bytes()), &as_order).is_err());
    }

    #[test]
    fn a_missing_or_malformed_header_is_refused_as_such() {
        let keys = ring(NEW, "2026-02");
        let message = order(b"{}", b"");
        assert_eq!(keys.verify(None, &message), Err(Forgery::Missing));
        let good = keys.sign(&message);
        let hex = good.split_once(':').unwrap().1.to_owned();
        for bad in [
            String::new(),
            hex.clone(),
            format!("2026-02:{}", &hex[..62]),
            format!("2026-02:{hex}00"),
            format!("2026-02:{}", hex.replace(|c: char| c.is_ascii_digit(), "z")),
            format!("Upper-Case:{hex}"),
            format!("a,b:{hex}"),
        ] {
            assert_eq!(
                keys.verify(Some(bad.as_bytes()), &message),
                Err(Forgery::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            keys.verify(Some(&[0xff, b':', b'0'][..]), &message),
            Err(Forgery::Malformed)
        );
        assert_eq!(
            keys.verify(Some(format!("2025-12:{hex}").as_bytes()), &message),
            Err(Forgery::UnknownKey {
                key_id: id("2025-12")
            })
        );
    }

    #[test]
    fn a_list_of_keys_is_refused_naming_the_entry_and_never_the_secret() {
        let cases = [
            ("", "k", KeyringError::Empty),
            (" , ", "k", KeyringError::Empty),
            ("k", "k", KeyringError::Malformed { entry: 1 }),
            (
                "k:sixteen-bytes-ok!,no-colon",
                "k",
                KeyringError::Malformed { entry: 2 },
            ),
            ("k:short", "k", KeyringError::Short(id("k"))),
            (
                "k:sixteen-bytes-ok!,k:sixteen-bytes-ok?",
                "k",
                KeyringError::Duplicate(id("k")),
            ),
            (
                "a:sixteen-bytes-ok!,b:sixteen-bytes-ok?",
                "c",
                KeyringError::UnknownSigningKey {
                    signing: "c".into(),
                    listed: "a, b".into(),
                },
            ),
        ];
        for (keys, signing, expected) in cases {
            assert_eq!(
                Keyring::parse(keys, signing).unwrap_err(),
                expected,
                "{keys:?}"
            );
        }
        let bad_id = Keyring::parse("Key One:sixteen-bytes-ok!", "k").unwrap_err();
        assert!(matches!(bad_id, KeyringError::BadId { entry: 1, .. }));
        assert!(!bad_id.to_string().contains("sixteen"), "{bad_id}");
        // A secret may hold `:`; blanks around ids, secrets and entries go.
        let keys = ring(" k : with:colons:16-bytes ,", "k");
        assert_eq!(
            keys.shortest_secret(),
            (&id("k"), "with:colons:16-bytes".len())
        );
    }

    #[test]
    fn debug_shows_the_key_ids_and_no_secret() {
        let keys = ring(&format!("{OLD},{NEW}"), "2026-02");
        let printed = format!("{keys:?}");
        assert!(
            printed.contains("2026-01") && printed.contains("2026-02"),
            "{printed}"
        );
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn a_keyring_finds_a_secret_it_shares_with_another() {
        let development = ring(OLD, "2026-01");
        let reused = ring(
            &format!("{NEW},prod:old-secret-of-sixteen-bytes"),
            "2026-02",
        );
        assert_eq!(reused.shares_a_secret_with(&development), Some(&id("prod")));
        assert_eq!(
            ring(NEW, "2026-02").shares_a_secret_with(&development),
            None
        );
    }

    #[test]
    fn every_forgery_kind_keeps_its_label() {
        crate::enum_checks::assert_stable_strings::<ForgeryKind>(&[
            "missing",
            "malformed",
            "unknown_key",
            "mismatch",
        ]);
        assert_eq!(Forgery::Missing.kind(), ForgeryKind::Missing);
    }
}
