//! What the proof of work at the door costs each side: a client solving challenges of a
//! difficulty, against the gateway checking the solutions (`seckill-sim pow`). Both run here,
//! on one core, with the code the gateway and a native client run.

use domain::pow::{Challenge, Purpose};
use std::time::{Duration, Instant};

/// The measured costs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PowCost {
    /// The difficulty (`maxnumber`).
    pub max_number: u64,
    /// Challenges solved.
    pub runs: usize,
    /// Median time to solve one, in µs.
    pub solve_median_us: f64,
    /// 90th percentile, in µs.
    pub solve_p90_us: f64,
    /// Median time to check one solution, in µs.
    pub verify_median_us: f64,
    /// How many times one solve costs what one check does (medians).
    pub ratio: f64,
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Solves `runs` fresh challenges of `max_number` and checks each solution 1,000 times.
pub fn measure(max_number: u64, runs: usize) -> PowCost {
    let key = b"seckill-sim pow key";
    let purpose = Purpose {
        user: "sim-buyer",
        sku: "phone-x",
        key: Some("buy-1"),
    };
    let mut solves = Vec::with_capacity(runs);
    let mut checks = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let random = uuid::Uuid::new_v4().as_u128();
        let nonce = format!("{:016x}", random as u64);
        let number = ((random >> 64) as u64) % (max_number + 1);
        let challenge = Challenge::issue(key, purpose, &nonce, i64::MAX, max_number, number);
        let started = Instant::now();
        let solution = challenge.solve().expect("an issued challenge is solvable");
        solves.push(started.elapsed().as_secs_f64() * 1e6);
        const CHECKS: u32 = 1_000;
        let started = Instant::now();
        for _ in 0..CHECKS {
            let checked = std::hint::black_box(&solution).verify(key, purpose, 0, max_number);
            assert!(checked.is_ok());
        }
        checks.push((started.elapsed() / CHECKS).as_secs_f64() * 1e6);
    }
    solves.sort_by(f64::total_cmp);
    checks.sort_by(f64::total_cmp);
    let solve_median_us = median(&solves);
    let verify_median_us = median(&checks);
    PowCost {
        max_number,
        runs: solves.len(),
        solve_median_us,
        solve_p90_us: solves[(solves.len() * 9 / 10).min(solves.len() - 1)],
        verify_median_us,
        ratio: solve_median_us / verify_median_us.max(f64::MIN_POSITIVE),
    }
}

impl std::fmt::Display for PowCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: f64| Duration::from_secs_f64(us / 1e6).as_secs_f64() * 1e3;
        write!(
            f,
            "maxnumber {}: solve median {:.2} ms (p90 {:.2} ms, {} challenges), check median {:.2} µs; a solve costs {:.0} checks",
            self.max_number,
            ms(self.solve_median_us),
            ms(self.solve_p90_us),
            self.runs,
            self.verify_median_us,
            self.ratio
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_harder_challenge_costs_the_client_more_and_the_check_stays_two_hashes() {
        let easy = super::measure(10, 5);
        assert_eq!((easy.max_number, easy.runs), (10, 5));
        assert!(easy.verify_median_us > 0.0);
        // The ratio's size is the benchmark's to report; here only that the sides are measured
        // apart and the solve of 10 numbers is not mistaken for 10,000.
        let hard = super::measure(10_000, 5);
        assert!(hard.solve_median_us > easy.solve_median_us);
    }
}
