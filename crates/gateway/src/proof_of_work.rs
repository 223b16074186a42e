//! The proof of work asked at the door (`[proof_of_work]`): the challenges this gateway issues
//! and the solutions it checks, with no state (the scheme is in [`domain::pow`]). Any gateway
//! checks what another issued: the key is derived from `waiting_room.ticket_secret`, which
//! every gateway shares.

use crate::error::ApiError;
use domain::pow::{Challenge, PowError, Purpose, Solution};
use hmac::Mac;
use secrecy::ExposeSecret;

/// Issues and checks challenges.
pub struct ProofOfWork {
    key: Vec<u8>,
    settings: settings::ProofOfWorkSettings,
}

impl ProofOfWork {
    /// The door the settings describe.
    pub fn from_settings(settings: &settings::Settings) -> Self {
        // A key of its own, derived, so that a challenge's signature is never a ticket's.
        let secret = settings.waiting_room.ticket_secret.expose_secret();
        let mut mac = domain::signing::hmac_sha256(secret.as_bytes());
        mac.update(b"seckill proof of work");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
            settings: settings.proof_of_work.clone(),
        }
    }

    /// Whether a solution is asked at all.
    pub fn required(&self) -> bool {
        self.settings.max_number > 0
    }

    /// A new challenge for `purpose`, as hard as the gateway's load says.
    pub fn challenge(&self, purpose: Purpose<'_>, under_load: bool, now: i64) -> Challenge {
        let max_number = self.settings.difficulty(under_load);
        let random = uuid::Uuid::new_v4().as_u128();
        let nonce = format!("{:016x}", random as u64);
        let number = ((random >> 64) as u64) % (max_number + 1);
        let expires_at = now + self.settings.expires_secs as i64;
        Challenge::issue(&self.key, purpose, &nonce, expires_at, max_number, number)
    }

    /// Checks the solution in `header` for `purpose` at `now` (unix seconds): `Ok` when none is
    /// asked, else `403 proof_of_work_required` or `proof_of_work_invalid`.
    pub fn check(
        &self,
        header: Option<&actix_web::http::header::HeaderValue>,
        purpose: Purpose<'_>,
        now: i64,
    ) -> Result<(), ApiError> {
        if !self.required() {
            return Ok(());
        }
        let header = header.ok_or(ApiError::ProofOfWorkRequired)?;
        let solution = header
            .to_str()
            .map_err(|_| PowError::Malformed)
            .and_then(Solution::decode);
        // A challenge issued for less than the calm difficulty (before it was raised) is refused.
        let least_work = self.settings.difficulty(false);
        solution
            .and_then(|solution| solution.verify(&self.key, purpose, now, least_work))
            .map_err(ApiError::ProofOfWorkInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solution_from_one_gateway_passes_another_and_harder_challenges_come_under_load() {
        let mut settings = settings::Settings::defaults();
        settings.proof_of_work.max_number = 1_000;
        settings.proof_of_work.max_number_under_load = 20_000;
        let door = ProofOfWork::from_settings(&settings);
        let other = ProofOfWork::from_settings(&settings);
        let purpose = Purpose {
            user: "alice",
            sku: "phone-x",
            key: None,
        };
        let calm = door.challenge(purpose, false, 1_000);
        assert_eq!(calm.maxnumber, 1_000);
        assert_eq!(door.challenge(purpose, true, 1_000).maxnumber, 20_000);
        let header = calm.solve().expect("solvable").encode();
        let header = actix_web::http::header::HeaderValue::from_str(&header).unwrap();
        assert!(other.check(Some(&header), purpose, 1_100).is_ok());
        assert!(matches!(
            other.check(None, purpose, 1_100),
            Err(ApiError::ProofOfWorkRequired)
        ));
        assert!(matches!(
            other.check(Some(&header), purpose, 1_301),
            Err(ApiError::ProofOfWorkInvalid(PowError::Expired))
        ));
        // Without a difficulty nothing is asked.
        settings.proof_of_work.max_number = 0;
        assert!(ProofOfWork::from_settings(&settings)
            .check(None, purpose, 1_000)
            .is_ok());
    }
}
