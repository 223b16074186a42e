//! Trace context in the W3C format (`traceparent`, `tracestate`). It arrives on the buyer's HTTP
//! request, or starts there. It travels in the Kafka headers of the order message, of its dead
//! letter and of a replayed order. Each service opens its log span for an order with the trace
//! id, so one `trace_id` finds the gateway's, the worker's and the replayer's lines of one buy.
//!
//! Parsing and formatting are OpenTelemetry's (`TraceContextPropagator`), and the ids are random
//! (`RandomIdGenerator`). No span is exported: the trace id correlates logs. A collector added
//! through `tracing-opentelemetry` would continue from the same context.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// The header naming the trace and the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The header carrying vendors' trace state along.
pub const TRACESTATE: &str = "tracestate";

/// Where one hop of a trace stands: the trace id shared by every hop, and this hop's span id.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceContext(SpanContext);

impl TraceContext {
    /// A new trace, sampled, for a request that came without a valid `traceparent`.
    pub fn start() -> Self {
        let ids = RandomIdGenerator::default();
        Self(SpanContext::new(
            ids.new_trace_id(),
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ))
    }

    /// The context a caller sent, if its `traceparent` is valid; `get` looks a header up by its
    /// lowercase name. An invalid one is ignored, as the W3C recommendation asks.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let context = TraceContextPropagator::new().extract(&Lookup(get, std::marker::PhantomData));
        let span = context.span().span_context().clone();
        span.is_valid().then_some(Self(span))
    }

    /// This hop's context under the caller's: the same trace, a new span id.
    pub fn child(&self) -> Self {
        Self(SpanContext::new(
            self.0.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            self.0.trace_flags(),
            false,
            self.0.trace_state().clone(),
        ))
    }

    /// The child of the caller's context, or a new trace when the caller sent none.
    pub fn continued<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self::from_headers(get)
            .map(|caller| caller.child())
            .unwrap_or_else(Self::start)
    }

    /// The headers that pass this context on: `traceparent`, and `tracestate` when there is one.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Collect(Vec::with_capacity(2));
        TraceContextPropagator::new().inject_context(
            &Context::new().with_remote_span_context(self.0.clone()),
            &mut headers,
        );
        headers.0
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.0.trace_id(),
            self.0.span_id(),
            self.0.trace_flags().to_u8()
        )
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }

    /// This hop's span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        self.0.span_id().to_string()
    }
}

/// A header lookup as OpenTelemetry's extractor; `'a` is how long the looked-up values live.
struct Lookup<'a, F>(F, std::marker::PhantomData<&'a str>);

impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Lookup<'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Collects what OpenTelemetry's propagator injects; an empty `tracestate` is left out.
struct Collect(Vec<(&'static str, String)>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            TRACEPARENT => TRACEPARENT,
            TRACESTATE if !value.is_empty() => TRACESTATE,
            _ => return,
        };
        self.0.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn lookup<'a>(headers: &'a [(&'static str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn a_child_keeps_the_trace_and_state_and_gets_its_own_span() {
        let headers = [(TRACEPARENT, CALLER), (TRACESTATE, "shop=7")];
        let caller = TraceContext::from_headers(lookup(&headers)).unwrap();
        assert_eq!(caller.traceparent(), CALLER);
        let child = TraceContext::continued(lookup(&headers));
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(child.span_id(), "00f067aa0ba902b7");
        assert_eq!(child.span_id().len(), 16);
        let sent = child.to_headers();
        assert_eq!(
            sent,
            vec![
                (TRACEPARENT, child.traceparent()),
                (TRACESTATE, "shop=7".to_owned())
            ]
        );
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let headers = [(TRACEPARENT, bad)];
            assert_eq!(TraceContext::from_headers(lookup(&headers)), None, "{bad}");
            let fresh = TraceContext::continued(lookup(&headers));
            assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(fresh.trace_id(), "0".repeat(32));
            assert_eq!(fresh.to_headers().len(), 1, "no tracestate on a new trace");
        }
        assert_ne!(
            TraceContext::start().trace_id(),
            TraceContext::start().trace_id()
        );
    }
}
