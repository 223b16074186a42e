//! Trace context in message headers: read from a consumed message, added to a produced one.

use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use telemetry::TraceContext;

/// The sender's trace context, if the headers of `message` carry a valid `traceparent`.
pub fn carried(message: &OwnedMessage) -> Option<TraceContext> {
    TraceContext::from_headers(|name| {
        crate::consume::header(message, name).and_then(|value| std::str::from_utf8(value).ok())
    })
}

/// This hop's trace context for `message`: under the sender's if it [`carried`] one, otherwise
/// a new trace (a message produced by hand, or by an older gateway).
pub fn continued(message: &OwnedMessage) -> TraceContext {
    carried(message)
        .map(|sender| sender.child())
        .unwrap_or_else(TraceContext::start)
}

/// `headers` with `trace` added (`traceparent`, and `tracestate` when there is one).
pub fn with_trace(mut headers: OwnedHeaders, trace: &TraceContext) -> OwnedHeaders {
    for (name, value) in trace.to_headers() {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    headers
}
