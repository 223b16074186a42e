//! The payment provider, as the demo plays it: signs each notice with the webhook secret the
//! way a provider does, posts it to `POST /v1/payments`, and retries what a provider retries
//! (no answer, `409 order_pending`, `503`) a bounded number of times.

use domain::OrderId;
use futures::StreamExt;
use std::time::Duration;

/// One payment to notify.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The provider's payment id.
    pub payment_id: String,
    /// The order paid.
    pub order_id: OrderId,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Currency.
    pub currency: &'static str,
}

/// How the gateway answered a notice (after the retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// HTTP status (0: no answer).
    pub status: u16,
    /// The problem code of an error answer.
    pub code: Option<String>,
}

/// Posts signed notices to one gateway.
pub struct Provider {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    concurrency: usize,
}

impl Provider {
    /// A provider notifying the gateway at `base_url`, signing with `secret`.
    pub fn new(base_url: &str, secret: Vec<u8>, concurrency: usize) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
            url: format!("{base_url}/v1/payments"),
            secret,
            concurrency: concurrency.max(1),
        }
    }

    /// Notifies every payment, `concurrency` at a time, in the given order as far as they go;
    /// the answers, in the same order.
    pub async fn notify_all(&self, payments: &[Payment]) -> Vec<Answered> {
        futures::stream::iter(payments)
            .map(|payment| self.notify(payment))
            .buffered(self.concurrency)
            .collect()
            .await
    }

    /// Notifies one payment, retrying what a provider retries up to 50 times, 100 ms apart.
    pub async fn notify(&self, payment: &Payment) -> Answered {
        let body = serde_json::to_vec(&serde_json::json!({
            "payment_id": payment.payment_id,
            "order_id": payment.order_id.as_str(),
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
        }))
        .expect("a notice serializes");
        let mut answered = Answered {
            status: 0,
            code: None,
        };
        for _ in 0..50 {
            let signature =
                domain::payment::sign(&self.secret, chrono::Utc::now().timestamp(), &body);
            let sent = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header(domain::payment::SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            answered = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let json: Option<serde_json::Value> = response.json().await.ok();
                    let code = json
                        .as_ref()
                        .and_then(|j| j.get("code"))
                        .and_then(|c| c.as_str())
                        .map(str::to_owned);
                    Answered { status, code }
                }
                Err(_) => Answered {
                    status: 0,
                    code: None,
                },
            };
            let retry = answered.status == 0
                || answered.status == 503
                || answered.code.as_deref() == Some("order_pending");
            if !retry {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answered
    }
}
