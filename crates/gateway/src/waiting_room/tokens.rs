//! The two tokens of a waiting room, both HS256 JWTs signed with `waiting_room.ticket_secret`:
//! the **place token** a join answers (the buyer's order of joining, so that a poll is answered
//! without Redis), and the **admission ticket** an admitted buyer's buys carry. Each is bound to
//! its buyer (`sub`) and its sale (`sku`), and says which it is (`typ`), so neither passes for the
//! other.

use crate::auth::TokenMemory;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most place tokens remembered; past it the memory starts over.
const REMEMBERED_PLACES: usize = 200_000;

/// What a place token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceClaims {
    /// `place`.
    pub typ: String,
    /// The buyer.
    pub sub: String,
    /// The sale.
    pub sku: String,
    /// The order of joining, from 1.
    pub seq: u64,
    /// When the buyer joined (ms since the epoch).
    pub joined_ms: i64,
    /// The line's identity.
    pub epoch: String,
    /// The wait estimated at the join (ms), to compare with the wait the buyer had.
    pub est_ms: i64,
}

/// What an admission ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// `ticket`.
    pub typ: String,
    /// The buyer.
    pub sub: String,
    /// The sale.
    pub sku: String,
    /// The admitted place.
    pub place: u64,
    /// Expiry, in seconds since the epoch (rounded up; `exp_ms` is the exact one).
    pub exp: i64,
    /// Expiry, in ms since the epoch.
    pub exp_ms: i64,
}

/// Why a ticket does not admit its bearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefusal {
    /// Not a ticket of this gateway's secret, or of another buyer or sale.
    Invalid,
    /// A good ticket, past its expiry.
    Expired,
}

const PLACE: &str = "place";
const TICKET: &str = "ticket";

/// Signs and checks the room's tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Place tokens that verified, by a fingerprint of their signature: a waiting buyer sends
    /// the same one with every poll, and a poll is the room's hot path.
    places: TokenMemory<PlaceClaims>,
}

impl Tokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &secrecy::SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        // Place tokens have no expiry, and a ticket's is checked to the ms by the caller.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            places: TokenMemory::new(REMEMBERED_PLACES),
        }
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    fn read<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The place token of `claims` (its `typ` is set here).
    pub fn place_token(&self, mut claims: PlaceClaims) -> String {
        claims.typ = PLACE.to_owned();
        self.sign(&claims)
    }

    /// The place `token` gives in the room of `sku`, if it is one. A token that verified before
    /// is remembered (and compared whole), not verified again.
    pub fn place(&self, token: &str, sku: &str) -> Option<Arc<PlaceClaims>> {
        let claims = match self.places.recall(token) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(
                    self.read::<PlaceClaims>(token)
                        .filter(|claims| claims.typ == PLACE)?,
                );
                self.places.remember(token, claims.clone());
                claims
            }
        };
        (claims.sku == sku).then_some(claims)
    }

    /// The ticket of `user`, admitted at `place` in the room of `sku`, until `exp_ms`.
    pub fn ticket(&self, user: &str, sku: &str, place: u64, exp_ms: i64) -> String {
        self.sign(&TicketClaims {
            typ: TICKET.to_owned(),
            sub: user.to_owned(),
            sku: sku.to_owned(),
            place,
            exp: exp_ms.div_euclid(1000) + i64::from(exp_ms.rem_euclid(1000) > 0),
            exp_ms,
        })
    }

    /// The claims of `token` when it is a current ticket of the sale of `sku`, whoever's: the
    /// first look of load shedding, before the bearer token is verified (the handler then
    /// checks the buyer with [`admitted`](Self::admitted), without verifying the ticket again).
    /// One HMAC: a made-up header earns nothing.
    pub fn current_ticket(&self, token: &str, sku: &str, now_ms: i64) -> Option<TicketClaims> {
        self.read::<TicketClaims>(token)
            .filter(|claims| claims.typ == TICKET && claims.sku == sku && now_ms < claims.exp_ms)
    }

    /// Whether `token` admits `user` to buy in the sale of `sku` at `now_ms`.
    pub fn admits(
        &self,
        token: &str,
        user: &str,
        sku: &str,
        now_ms: i64,
    ) -> Result<TicketClaims, TicketRefusal> {
        let claims = self
            .read::<TicketClaims>(token)
            .ok_or(TicketRefusal::Invalid)?;
        Self::admitted(claims, user, sku, now_ms)
    }

    /// Whether the verified `claims` of a ticket admit `user` to buy in the sale of `sku` at
    /// `now_ms`.
    pub fn admitted(
        claims: TicketClaims,
        user: &str,
        sku: &str,
        now_ms: i64,
    ) -> Result<TicketClaims, TicketRefusal> {
        if claims.typ != TICKET || claims.sub != user || claims.sku != sku {
            return Err(TicketRefusal::Invalid);
        }
        if now_ms >= claims.exp_ms {
            return Err(TicketRefusal::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_with(secret: &str) -> Tokens {
        Tokens::new(&secrecy::SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_ticket_admits_its_buyer_to_its_sale_until_it_expires_and_nobody_else() {
        let tokens = signed_with("a-secret-of-the-test-gateways");
        let ticket = tokens.ticket("alice", "phone", 7, 10_500);
        let claims = tokens.admits(&ticket, "alice", "phone", 10_499).unwrap();
        assert_eq!((claims.place, claims.exp, claims.exp_ms), (7, 11, 10_500));
        assert_eq!(
            tokens.admits(&ticket, "alice", "phone", 10_500),
            Err(TicketRefusal::Expired)
        );
        assert!(tokens.current_ticket(&ticket, "phone", 10_499).is_some());
        assert!(tokens.current_ticket(&ticket, "phone", 10_500).is_none());
        assert!(tokens.current_ticket(&ticket, "tablet", 0).is_none());
        assert!(tokens.current_ticket("made-up", "phone", 0).is_none());
        assert_eq!(
            tokens.admits(&ticket, "bob", "phone", 0),
            Err(TicketRefusal::Invalid)
        );
        assert_eq!(
            tokens.admits(&ticket, "alice", "tablet", 0),
            Err(TicketRefusal::Invalid)
        );
        let forged = signed_with("another-secret-altogether").ticket("alice", "phone", 7, 99_999);
        assert_eq!(
            tokens.admits(&forged, "alice", "phone", 0),
            Err(TicketRefusal::Invalid)
        );
        assert_eq!(
            tokens.admits("not a token", "alice", "phone", 0),
            Err(TicketRefusal::Invalid)
        );
    }

    #[test]
    fn a_place_token_is_no_ticket_and_a_ticket_is_no_place_token() {
        let tokens = signed_with("a-secret-of-the-test-gateways");
        let place = tokens.place_token(PlaceClaims {
            typ: String::new(),
            sub: "alice".into(),
            sku: "phone".into(),
            seq: 3,
            joined_ms: 1,
            epoch: "e1".into(),
            est_ms: 0,
        });
        let read = tokens.place(&place, "phone").unwrap();
        assert_eq!(
            (read.sub.as_str(), read.seq, read.epoch.as_str()),
            ("alice", 3, "e1")
        );
        // Remembered, and the same again.
        assert_eq!(tokens.place(&place, "phone").unwrap(), read);
        assert!(tokens.place(&place, "tablet").is_none());
        assert!(tokens.admits(&place, "alice", "phone", 0).is_err());
        let ticket = tokens.ticket("alice", "phone", 3, i64::MAX);
        assert!(tokens.place(&ticket, "phone").is_none());
        let mut forged = place.clone();
        forged.pop();
        assert!(tokens.place(&forged, "phone").is_none());
    }
}
