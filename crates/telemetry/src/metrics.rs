//! Declaring a service's metrics: each helper builds one metric, registers it in the service's
//! registry and hands it back, so a service writes a metric once, as its name, help, labels and
//! buckets. A name or label Prometheus refuses, or a name registered twice, is a mistake in the
//! declaration, not a condition to run with: the helpers panic, at start-up.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// A counter.
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

/// A counter with labels.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, counter)
}

/// A counter with one label whose values are known in advance: each of `values` has its series
/// from the start, at zero, since a series that does not exist yet is missing from `rate()` and
/// alerts (rather than 0) until its first event.
pub fn counter_by<V>(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = V>,
) -> IntCounterVec
where
    V: AsRef<str> + std::fmt::Debug,
{
    let counter = counter_vec(registry, name, help, &[label]);
    for value in values {
        counter.with_label_values(&[value]);
    }
    counter
}

/// A gauge.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

/// A histogram with the given bucket bounds.
pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    let histogram = Histogram::with_opts(opts).expect("valid metric");
    register(registry, histogram)
}

/// A histogram with labels and the given bucket bounds.
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    let histogram = HistogramVec::new(opts, labels).expect("valid metric");
    register(registry, histogram)
}

/// `count` bucket bounds from `start`, each `factor` times the one before.
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect("valid buckets")
}

/// Registers `metric` in `registry` and hands it back.
pub fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_by_known_values_exports_each_series_at_zero() {
        let registry = Registry::new();
        counter_by(
            &registry,
            "things_total",
            "Things, by outcome.",
            "outcome",
            ["ok", "error"],
        );
        let text = crate::render(&registry);
        assert!(
            text.contains("# HELP things_total Things, by outcome."),
            "{text}"
        );
        assert!(text.contains("things_total{outcome=\"ok\"} 0"), "{text}");
        assert!(text.contains("things_total{outcome=\"error\"} 0"), "{text}");
    }

    #[test]
    fn a_histogram_keeps_the_buckets_it_is_given() {
        let registry = Registry::new();
        let buckets = exponential_buckets(1.0, 2.0, 3);
        assert_eq!(buckets, [1.0, 2.0, 4.0]);
        histogram(&registry, "waits_seconds", "Waits.", buckets).observe(3.0);
        let text = crate::render(&registry);
        assert!(text.contains("waits_seconds_bucket{le=\"4\"} 1"), "{text}");
    }

    #[test]
    #[should_panic(expected = "metric registered once")]
    fn a_name_registered_twice_is_refused_at_start_up() {
        let registry = Registry::new();
        gauge(&registry, "depth", "Depth.");
        gauge(&registry, "depth", "Depth.");
    }
}
