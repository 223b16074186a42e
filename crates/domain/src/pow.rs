//! Proof of work at the door: a challenge the gateway signs and a client solves before it may
//! join a waiting room, or buy where it holds no admission ticket. It makes each account's
//! join, and each order, cost the client CPU time, while checking a solution costs the gateway
//! two hashes.
//!
//! The scheme is ALTCHA's (so its widget can solve it in a browser): the gateway picks a secret
//! `number` in `0..=maxnumber` and publishes `challenge = hex(SHA-256(salt ++ number))` with
//! `signature = hex(HMAC-SHA256(key, challenge))`; the client tries numbers until the hash
//! matches and sends back base64 JSON `{algorithm, challenge, number, salt, signature}`. On
//! average the client hashes `maxnumber / 2` times.
//!
//! Stateless, and one effect per solution: the salt carries its expiry, its difficulty and what
//! the solution is for (the buyer, the sale, and for a buy its idempotency key), inside the
//! signed challenge. Those actions are idempotent (one place per buyer and sale; one order per
//! buyer and key), so a solution sent again (a retry after `503`, say) repeats the same join or
//! the same order and buys no second one; no memory of used solutions is needed. What it does
//! not stop: solving ahead of time, within the expiry. The salt's parameters end with `&`, so
//! that digits of a number moved into the salt (ALTCHA's splicing) name no other purpose.

use crate::signing::hmac_sha256;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The request header carrying a solution.
pub const HEADER: &str = "Proof-Of-Work";

/// The only algorithm offered.
pub const ALGORITHM: &str = "SHA-256";

/// The largest `maxnumber` a challenge may have (a few seconds of a phone's CPU).
pub const MAX_NUMBER_LIMIT: u64 = 10_000_000;

/// What a solution is for: its buyer and sale, and for a buy the order's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose<'a> {
    /// The buyer (`sub`).
    pub user: &'a str,
    /// The sale.
    pub sku: &'a str,
    /// The idempotency key of the buy it pays for; `None`: a join.
    pub key: Option<&'a str>,
}

impl Purpose<'_> {
    /// The salt's parameters: the purpose in a form no user id, SKU or hashed key can forge
    /// (none of them holds `&` or `=`; the key, which may, is hashed), ended by `&`.
    fn parameters(&self) -> String {
        let mut text = format!("sub={}&sku={}&", self.user, self.sku);
        if let Some(key) = self.key {
            let digest = Sha256::digest(key.as_bytes());
            text.push_str("key=");
            text.push_str(&hex::encode(&digest[..16]));
            text.push('&');
        }
        text
    }
}

/// A challenge, as the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Challenge {
    /// `SHA-256`.
    #[cfg_attr(feature = "openapi", schema(example = "SHA-256"))]
    pub algorithm: String,
    /// `hex(SHA-256(salt ++ number))` of the secret number.
    pub challenge: String,
    /// The largest number to try.
    #[cfg_attr(feature = "openapi", schema(example = 50000))]
    pub maxnumber: u64,
    /// A random part, then `?expires=<unix seconds>&max=<maxnumber>&sub=..&sku=..&[key=..&]`.
    pub salt: String,
    /// `hex(HMAC-SHA256(key, challenge))`.
    pub signature: String,
}

/// A solution, as the client sends it (base64 of its JSON in [`HEADER`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solution {
    /// `SHA-256`.
    pub algorithm: String,
    /// The challenge solved.
    pub challenge: String,
    /// The number found.
    pub number: u64,
    /// The challenge's salt.
    pub salt: String,
    /// The challenge's signature.
    pub signature: String,
}

/// Why a solution is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    /// Not base64 of the JSON of a solution, or another algorithm.
    #[error("the Proof-Of-Work header is not base64 JSON of a solution with algorithm SHA-256")]
    Malformed,
    /// The gateway did not sign this challenge, or signed it for less work than it now asks.
    #[error("the challenge was not issued by this service")]
    Forged,
    /// The number does not hash to the challenge.
    #[error("the number does not solve the challenge")]
    Unsolved,
    /// Past its expiry.
    #[error("the challenge has expired; fetch a new one")]
    Expired,
    /// Issued for another buyer, sale or order.
    #[error("the challenge was issued for another buyer, sale or order")]
    OtherPurpose,
}

fn signature(key: &[u8], challenge: &str) -> Hmac<Sha256> {
    let mut mac = hmac_sha256(key);
    mac.update(challenge.as_bytes());
    mac
}

fn hash(salt: &str, number: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(number.to_string().as_bytes());
    hasher.finalize().into()
}

impl Challenge {
    /// The challenge for `purpose` signed with `key`: `nonce` (random, hex) starts the salt,
    /// which expires at `expires_at` (unix seconds); `number` (secret, random, at most
    /// `max_number`) solves it.
    pub fn issue(
        key: &[u8],
        purpose: Purpose<'_>,
        nonce: &str,
        expires_at: i64,
        max_number: u64,
        number: u64,
    ) -> Self {
        let salt = format!(
            "{nonce}?expires={expires_at}&max={max_number}&{}",
            purpose.parameters()
        );
        let challenge = hex::encode(hash(&salt, number.min(max_number)));
        let signature = hex::encode(signature(key, &challenge).finalize().into_bytes());
        Self {
            algorithm: ALGORITHM.to_owned(),
            challenge,
            maxnumber: max_number,
            salt,
            signature,
        }
    }

    /// What a client does: the number that solves it, trying `0..=maxnumber` in order (`None`
    /// if none does: a forged challenge).
    pub fn solve(&self) -> Option<Solution> {
        let mut wanted = [0u8; 32];
        hex::decode_to_slice(&self.challenge, &mut wanted).ok()?;
        let number = (0..=self.maxnumber).find(|n| hash(&self.salt, *n) == wanted)?;
        Some(Solution {
            algorithm: self.algorithm.clone(),
            challenge: self.challenge.clone(),
            number,
            salt: self.salt.clone(),
            signature: self.signature.clone(),
        })
    }
}

impl Solution {
    /// The header value: base64 of the JSON.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(self).expect("a solution serializes");
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// A solution from its header value.
    pub fn decode(header: &str) -> Result<Self, PowError> {
        use base64::Engine;
        if header.len() > 1024 {
            return Err(PowError::Malformed);
        }
        let json = base64::engine::general_purpose::STANDARD
            .decode(header.trim())
            .map_err(|_| PowError::Malformed)?;
        let solution: Self = serde_json::from_slice(&json).map_err(|_| PowError::Malformed)?;
        match solution.algorithm == ALGORITHM {
            true => Ok(solution),
            false => Err(PowError::Malformed),
        }
    }

    /// Checks the solution for `purpose` at `now` (unix seconds) against `key`: the gateway
    /// signed the challenge, for at least `least_work` (its `maxnumber`), the number solves
    /// it, it has not expired, and it was issued for this purpose. Costs one HMAC and one
    /// SHA-256.
    pub fn verify(
        &self,
        key: &[u8],
        purpose: Purpose<'_>,
        now: i64,
        least_work: u64,
    ) -> Result<(), PowError> {
        let mut expected = [0u8; 32];
        hex::decode_to_slice(&self.signature, &mut expected).map_err(|_| PowError::Forged)?;
        signature(key, &self.challenge)
            .verify_slice(&expected)
            .map_err(|_| PowError::Forged)?;
        let mut wanted = [0u8; 32];
        hex::decode_to_slice(&self.challenge, &mut wanted).map_err(|_| PowError::Forged)?;
        if hash(&self.salt, self.number) != wanted {
            return Err(PowError::Unsolved);
        }
        let (_, parameters) = self.salt.split_once('?').ok_or(PowError::Forged)?;
        let (expires, rest) = parameters
            .strip_prefix("expires=")
            .and_then(|p| p.split_once('&'))
            .ok_or(PowError::Forged)?;
        let (max, rest) = rest
            .strip_prefix("max=")
            .and_then(|p| p.split_once('&'))
            .ok_or(PowError::Forged)?;
        let expires: i64 = expires.parse().map_err(|_| PowError::Forged)?;
        let max: u64 = max.parse().map_err(|_| PowError::Forged)?;
        if max < least_work {
            return Err(PowError::Forged);
        }
        if now > expires {
            return Err(PowError::Expired);
        }
        match rest == purpose.parameters() {
            true => Ok(()),
            false => Err(PowError::OtherPurpose),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a-proof-of-work-key";
    const JOIN: Purpose<'static> = Purpose {
        user: "alice",
        sku: "phone-x",
        key: None,
    };

    #[test]
    fn a_solved_challenge_verifies_once_encoded_and_decoded() {
        let challenge = Challenge::issue(KEY, JOIN, "9f1c", 1_000, 5_000, 4_321);
        let solution = challenge.solve().expect("solvable");
        assert_eq!(solution.number, 4_321);
        let sent = Solution::decode(&solution.encode()).expect("decodes");
        assert_eq!(sent.verify(KEY, JOIN, 1_000, 5_000), Ok(()));
    }

    #[test]
    fn a_solution_is_refused_when_forged_unsolved_expired_or_for_another_purpose() {
        let buy = Purpose {
            key: Some("buy-1"),
            ..JOIN
        };
        let solution = Challenge::issue(KEY, buy, "77ab", 1_000, 100, 42)
            .solve()
            .unwrap();
        assert_eq!(solution.verify(KEY, buy, 1_000, 100), Ok(()));
        assert_eq!(
            solution.verify(b"another-key", buy, 1_000, 100),
            Err(PowError::Forged)
        );
        let wrong = Solution {
            number: 41,
            ..solution.clone()
        };
        assert_eq!(wrong.verify(KEY, buy, 1_000, 100), Err(PowError::Unsolved));
        // A salt changed to stretch the expiry no longer hashes to the signed challenge.
        let stretched = Solution {
            salt: solution.salt.replace("expires=1000", "expires=9999"),
            ..solution.clone()
        };
        assert_eq!(
            stretched.verify(KEY, buy, 1_000, 100),
            Err(PowError::Unsolved)
        );
        assert_eq!(
            solution.verify(KEY, buy, 1_001, 100),
            Err(PowError::Expired)
        );
        for other in [
            Purpose { user: "bob", ..buy },
            Purpose {
                sku: "phone-y",
                ..buy
            },
            Purpose {
                key: Some("buy-2"),
                ..buy
            },
            JOIN,
        ] {
            assert_eq!(
                solution.verify(KEY, other, 1_000, 100),
                Err(PowError::OtherPurpose)
            );
        }
        // A challenge of less work than the gateway now asks is refused.
        assert_eq!(solution.verify(KEY, buy, 1_000, 101), Err(PowError::Forged));
        // Digits of the number moved into the salt (ALTCHA's splicing) name no other sale.
        let spliced = Solution {
            salt: format!("{}{}", solution.salt, solution.number / 10),
            number: solution.number % 10,
            ..solution.clone()
        };
        let other_sale = Purpose {
            sku: "phone-x4",
            ..buy
        };
        assert!(spliced.verify(KEY, other_sale, 1_000, 100).is_err());
        assert_eq!(Solution::decode("not base64!"), Err(PowError::Malformed));
        let md5 = Solution {
            algorithm: "MD5".into(),
            ..solution
        };
        assert_eq!(Solution::decode(&md5.encode()), Err(PowError::Malformed));
    }
}
