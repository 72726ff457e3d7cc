//! Delivery outcomes and the pure classifiers every sink shares.
//!
//! A sink reports one [`Outcome`] per reading. The delivery loop turns it into a queue decision:
//! `Delivered` settles the entry, `Retry` schedules it again with backoff, `Rejected` moves it to
//! the sink's dead-letter tree (never dropped). The classifiers here decide the outcome from what
//! the receiver said, without I/O, so the delivery rules are tested in one place.

/// What happened to one reading at one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver has the reading durably (HTTP 2xx, MLLP AA, line fsynced).
    Delivered,
    /// A transient failure: try again later (timeout, 408/429/5xx, connection refused).
    Retry(String),
    /// The receiver will never accept this reading as sent: dead-letter it.
    Rejected(String),
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered)
    }

    pub fn is_retry(&self) -> bool {
        matches!(self, Outcome::Retry(_))
    }

    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retry",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// The most characters of a receiver's body text kept in a reason.
const HINT_MAX_CHARS: usize = 200;

/// HTTP status → outcome: 2xx delivered; 408, 429 and 5xx retry; other 4xx (and
/// anything else unexpected, such as 1xx or 3xx after redirects were followed) reject.
///
/// `body_hint` is a short excerpt of the response (an OperationOutcome diagnostic), kept in the
/// reason so the dead-letter entry says why. A 412 on a conditional create means duplicates
/// already exist on the server: rejected, never retried forever.
pub fn classify_http(status: u16, body_hint: &str) -> Outcome {
    let reason = || {
        let hint: String = body_hint.trim().chars().take(HINT_MAX_CHARS).collect();
        if hint.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {hint}")
        }
    };
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry(reason()),
        _ => Outcome::Rejected(reason()),
    }
}

/// The HTTP status of a FHIR interaction (a whole transaction, or one entry of its response)
/// → outcome. As [`classify_http`], with two FHIR rules:
/// - 401 and 403 retry: the sink's credentials are wrong or expired, not the reading.
///   Rejecting would move the whole queue to dead-letter while an operator renews a token.
/// - 412 on a conditional create means duplicates already exist on the server: rejected with
///   that explanation, never retried forever (the full table of answers is in docs/fhir.md).
pub fn classify_fhir(status: u16, diagnostics: &str) -> Outcome {
    match status {
        401 | 403 => match classify_http(status, diagnostics) {
            Outcome::Rejected(r) => Outcome::Retry(format!("{r} (check the sink's credentials)")),
            other => other,
        },
        412 => {
            let hint: String = diagnostics.trim().chars().take(HINT_MAX_CHARS).collect();
            let mut r = String::from("HTTP 412: duplicates exist on the server");
            if !hint.is_empty() {
                r.push_str(" (");
                r.push_str(&hint);
                r.push(')');
            }
            Outcome::Rejected(r)
        }
        _ => classify_http(status, diagnostics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_2xx_status_means_delivered() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_http(s, ""), Outcome::Delivered, "{s}");
        }
    }

    #[test]
    fn timeouts_throttling_and_server_errors_are_retried() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(classify_http(s, "busy").is_retry(), "{s}");
        }
    }

    #[test]
    fn other_client_errors_are_rejected_with_the_status_in_the_reason() {
        for s in [400, 401, 403, 404, 409, 412, 422] {
            match classify_http(s, "bad code") {
                Outcome::Rejected(r) => assert_eq!(r, format!("HTTP {s}: bad code")),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn unexpected_informational_and_redirect_statuses_are_rejected() {
        assert_eq!(classify_http(302, ""), Outcome::Rejected("HTTP 302".into()));
        assert_eq!(classify_http(101, ""), Outcome::Rejected("HTTP 101".into()));
    }

    #[test]
    fn a_long_body_hint_is_cut_in_the_reason() {
        let body = "x".repeat(5000);
        let Outcome::Retry(r) = classify_http(503, &body) else {
            panic!("503 must retry");
        };
        assert_eq!(r.len(), "HTTP 503: ".len() + HINT_MAX_CHARS);
    }

    #[test]
    fn fhir_auth_failures_are_retried_not_dead_lettered() {
        assert_eq!(
            classify_fhir(401, ""),
            Outcome::Retry("HTTP 401 (check the sink's credentials)".into())
        );
        assert!(classify_fhir(403, "scope").is_retry());
    }

    #[test]
    fn a_fhir_412_says_duplicates_exist_on_the_server() {
        assert_eq!(
            classify_fhir(412, "Multiple matches"),
            Outcome::Rejected("HTTP 412: duplicates exist on the server (Multiple matches)".into())
        );
        assert_eq!(
            classify_fhir(412, ""),
            Outcome::Rejected("HTTP 412: duplicates exist on the server".into())
        );
    }

    #[test]
    fn other_fhir_statuses_follow_the_http_rules() {
        assert_eq!(classify_fhir(201, ""), Outcome::Delivered);
        assert!(classify_fhir(503, "").is_retry());
        assert_eq!(
            classify_fhir(400, "bad code"),
            Outcome::Rejected("HTTP 400: bad code".into())
        );
    }
}
