//! Message signatures in headers (`seckill-signature`, see `domain::signing`): added to an order
//! message or a dead letter as it is produced, checked on one consumed. What a signature covers
//! is read from the message the same way on both sides: its key, its payload and the headers
//! [`Signed`] names, an absent one as empty.

use domain::dead_letter::header;
use domain::signing::SIGNATURE_HEADER;
use domain::{Forgery, KeyId, Keyring, Signed};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::Message;

/// `headers` with the signature of `signed` under the signing key of `keyring` added.
pub fn with_signature(
    headers: OwnedHeaders,
    keyring: &Keyring,
    signed: &Signed<'_>,
) -> OwnedHeaders {
    let signature = keyring.sign(signed);
    headers.insert(Header {
        key: SIGNATURE_HEADER,
        value: Some(signature.as_bytes()),
    })
}

/// What the signature of `message`, a message of the orders topic, covers.
pub fn order_of(message: &OwnedMessage) -> Signed<'_> {
    Signed::Order {
        key: message.key().unwrap_or_default(),
        payload: message.payload().unwrap_or_default(),
        replays: crate::consume::header(message, header::REPLAYS).unwrap_or_default(),
    }
}

/// What the signature of `message`, a dead letter, covers.
pub fn dead_letter_of(message: &OwnedMessage) -> Signed<'_> {
    Signed::DeadLetter {
        key: message.key().unwrap_or_default(),
        payload: message.payload().unwrap_or_default(),
        reason: crate::consume::header(message, header::REASON).unwrap_or_default(),
        attempts: crate::consume::header(message, header::ATTEMPTS).unwrap_or_default(),
    }
}

/// Checks the signature `message` carries against `signed` (what [`order_of`] or
/// [`dead_letter_of`] read from it); the id of the key that made it.
pub fn verify<'k>(
    message: &OwnedMessage,
    keyring: &'k Keyring,
    signed: &Signed<'_>,
) -> Result<&'k KeyId, Forgery> {
    keyring.verify(crate::consume::header(message, SIGNATURE_HEADER), signed)
}
