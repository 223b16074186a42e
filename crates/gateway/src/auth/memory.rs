//! A memory of tokens that verified. A client sends the same token with every request (a buyer's
//! bearer token with every click, a waiting buyer's place token with every poll), and checking
//! its signature and claims again is most of what a cheap answer costs. A token is recalled only
//! when it is byte for byte the one remembered; what else must still hold (an expiry, the keys it
//! was verified with) is the caller's to check.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, PoisonError, RwLock};

/// Remembered tokens, by a fingerprint of their signature: the token whole, and what it said.
type Remembered<T> = HashMap<u64, (Box<str>, Arc<T>)>;

/// What tokens that verified said, up to `most` of them (past it the memory starts over).
pub struct TokenMemory<T> {
    known: RwLock<Remembered<T>>,
    most: usize,
}

impl<T> TokenMemory<T> {
    /// A memory of at most `most` tokens.
    pub fn new(most: usize) -> Self {
        Self {
            known: RwLock::default(),
            most,
        }
    }

    /// What `token` said when it verified, if it is remembered.
    pub fn recall(&self, token: &str) -> Option<Arc<T>> {
        self.known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fingerprint(token))
            .filter(|(known, _)| **known == *token)
            .map(|(_, value)| value.clone())
    }

    /// Remembers what `token`, which verified, said.
    pub fn remember(&self, token: &str, value: Arc<T>) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= self.most {
            known.clear();
        }
        known.insert(fingerprint(token), (token.into(), value));
    }
}

/// The signature alone tells tokens apart; a recalled one is compared whole.
fn fingerprint(token: &str) -> u64 {
    let signature = token.rsplit('.').next().unwrap_or(token);
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(signature.as_bytes());
    hasher.finish()
}
