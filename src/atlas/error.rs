//! Errors of the Atlas client. Atlas's error envelope is kept (status, `errorCode`, detail, parameters)
//! because the reconciler branches on `errorCode`, never on the human text. No variant carries a
//! credential: messages are built from the request template, the status and Atlas's own answer.

use std::time::Duration;

use serde::Deserialize;

/// Atlas's error body, `{detail, error, errorCode, parameters, reason}`, the official specification's `ApiError`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorEnvelope {
    pub detail: Option<String>,
    pub error: Option<u16>,
    pub error_code: Option<String>,
    pub parameters: Vec<serde_json::Value>,
    pub reason: Option<String>,
}

impl ErrorEnvelope {
    /// `None` when the body is not Atlas's envelope (a proxy's HTML page, an empty body…).
    pub fn parse(body: &[u8]) -> Option<ErrorEnvelope> {
        let env: ErrorEnvelope = serde_json::from_slice(body).ok()?;
        env.error_code.is_some().then_some(env)
    }
}

/// Atlas's human text is bounded before it reaches a status message or an Event.
const MAX_DETAIL: usize = 1024;

pub(crate) fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AtlasError {
    /// Atlas answered with an error status and (usually) its error envelope.
    #[error("Atlas {method} {endpoint}: HTTP {status} {error_code}: {detail}")]
    Api {
        method: &'static str,
        endpoint: &'static str,
        status: u16,
        /// `errorCode`; `UNKNOWN` when the body was not Atlas's envelope.
        error_code: String,
        detail: String,
        parameters: Vec<serde_json::Value>,
    },
    /// 429 (or a 503 with Retry-After) that outlasted the retry budget; requeue after `retry_after`.
    #[error("Atlas {method} {endpoint}: rate limited ({error_code}), retry after {retry_after:?}")]
    RateLimited {
        method: &'static str,
        endpoint: &'static str,
        error_code: String,
        retry_after: Option<Duration>,
    },
    /// The credentials were refused: wrong API key pair, unknown service account, revoked token.
    #[error("Atlas {method} {endpoint}: credentials refused (HTTP {status} {error_code}): {detail}")]
    Unauthorized {
        method: &'static str,
        endpoint: &'static str,
        status: u16,
        error_code: String,
        detail: String,
    },
    #[error("Atlas {method} {endpoint}: no answer within {timeout:?}")]
    Timeout {
        method: &'static str,
        endpoint: &'static str,
        timeout: Duration,
    },
    /// Connection refused, reset, DNS failure, TLS failure.
    #[error("Atlas {method} {endpoint}: transport error: {message}")]
    Transport {
        method: &'static str,
        endpoint: &'static str,
        message: String,
        /// The connection was never established, so the request was certainly not processed.
        connect: bool,
    },
    /// The TLS handshake refused Atlas's certificate (unknown issuer, wrong name, expired): nothing was
    /// sent. Retrying cannot help until the trust store or the network path changes.
    #[error("Atlas {method} {endpoint}: the server's TLS certificate is not trusted: {message}")]
    UntrustedCertificate {
        method: &'static str,
        endpoint: &'static str,
        message: String,
    },
    #[error("Atlas {method} {endpoint}: unreadable response (HTTP {status}): {message}")]
    Decode {
        method: &'static str,
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    #[error("Atlas client configuration: {0}")]
    Config(String),
    /// A call in the spare lane (see [`super::lane::Lane::Spare`]) found no budget to spare: it was
    /// not sent.
    #[error("Atlas {method} {endpoint}: not sent, no budget to spare now")]
    NoSpareBudget {
        method: &'static str,
        endpoint: &'static str,
    },
}

pub type Result<T, E = AtlasError> = std::result::Result<T, E>;

impl AtlasError {
    pub fn error_code(&self) -> Option<&str> {
        match self {
            AtlasError::Api { error_code, .. }
            | AtlasError::RateLimited { error_code, .. }
            | AtlasError::Unauthorized { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            AtlasError::Api { status, .. }
            | AtlasError::Unauthorized { status, .. }
            | AtlasError::Decode { status, .. } => Some(*status),
            AtlasError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    pub fn is_error_code(&self, code: &str) -> bool {
        self.error_code() == Some(code)
    }

    /// 404 of any kind (`GROUP_NOT_FOUND`, `CLUSTER_NOT_FOUND`, `RESOURCE_NOT_FOUND`…).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Worth retrying later without any change on our side.
    pub fn is_transient(&self) -> bool {
        match self {
            AtlasError::RateLimited { .. } | AtlasError::Timeout { .. } | AtlasError::Transport { .. } => {
                true
            }
            AtlasError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Refused for reasons every call with the same credentials meets alike: a server certificate the
    /// trust store refuses, or credentials Atlas does not accept.
    pub fn refuses_every_call(&self) -> bool {
        matches!(
            self,
            AtlasError::UntrustedCertificate { .. } | AtlasError::Unauthorized { .. }
        )
    }

    /// A write that may have reached Atlas though no answer came back: it timed out, or the connection
    /// broke after it was sent. Atlas may still be applying it.
    pub fn write_outcome_unknown(&self) -> bool {
        match self {
            AtlasError::Timeout { method, .. } => *method != "GET",
            AtlasError::Transport { method, connect, .. } => *method != "GET" && !connect,
            _ => false,
        }
    }

    /// How long Atlas asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AtlasError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A bounded, static label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            AtlasError::Api { status, .. } => match status {
                400 => "atlas_bad_request",
                401 | 403 => "atlas_forbidden",
                404 => "atlas_not_found",
                409 => "atlas_conflict",
                410 => "atlas_version_gone",
                s if *s >= 500 => "atlas_server_error",
                _ => "atlas_api_error",
            },
            AtlasError::RateLimited { .. } => "atlas_rate_limited",
            AtlasError::Unauthorized { .. } => "atlas_unauthorized",
            AtlasError::Timeout { .. } => "atlas_timeout",
            AtlasError::Transport { .. } => "atlas_unreachable",
            AtlasError::UntrustedCertificate { .. } => "atlas_certificate_untrusted",
            AtlasError::Decode { .. } => "atlas_decode",
            AtlasError::Config(_) => "atlas_config",
            AtlasError::NoSpareBudget { .. } => "atlas_no_spare_budget",
        }
    }

    /// Builds the error for a non-success answer. 401s are credential refusals except `NOT_IN_GROUP`,
    /// which Atlas also uses for "the project does not exist or this key cannot see it".
    pub(crate) fn from_response(
        method: &'static str,
        endpoint: &'static str,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> AtlasError {
        let env = ErrorEnvelope::parse(body);
        let error_code = env
            .as_ref()
            .and_then(|e| e.error_code.clone())
            .unwrap_or_else(|| "UNKNOWN".to_string());
        let detail = env
            .as_ref()
            .and_then(|e| e.detail.as_deref().or(e.reason.as_deref()))
            .map(bounded)
            .unwrap_or_else(|| format!("HTTP {status} without an Atlas error body"));
        if status == 429 {
            return AtlasError::RateLimited {
                method,
                endpoint,
                error_code,
                retry_after,
            };
        }
        if status == 401 && error_code != "NOT_IN_GROUP" {
            return AtlasError::Unauthorized {
                method,
                endpoint,
                status,
                error_code,
                detail,
            };
        }
        AtlasError::Api {
            method,
            endpoint,
            status,
            error_code,
            detail,
            parameters: env.map(|e| e.parameters).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "/groups/{groupId}/cloudProviderAccess/{roleId}";

    #[test]
    fn only_a_sent_write_without_an_answer_has_an_unknown_outcome() {
        let timeout = |method| AtlasError::Timeout {
            method,
            endpoint: EP,
            timeout: Duration::from_secs(1),
        };
        let transport = |method, connect| AtlasError::Transport {
            method,
            endpoint: EP,
            message: "reset".into(),
            connect,
        };
        assert!(timeout("PATCH").write_outcome_unknown());
        assert!(transport("POST", false).write_outcome_unknown());
        assert!(!timeout("GET").write_outcome_unknown(), "a read changes nothing");
        assert!(
            !transport("PATCH", true).write_outcome_unknown(),
            "never connected: never sent"
        );
        let refused = AtlasError::from_response("PATCH", EP, 503, b"{}", None);
        assert!(!refused.write_outcome_unknown(), "Atlas answered");
    }

    #[test]
    fn envelope_is_parsed_into_a_typed_error() {
        let body =
            br#"{"detail": "Atlas cannot assume the specified role (arn:aws:iam::358363220050:role/x).",
            "error": 400, "errorCode": "CANNOT_ASSUME_ROLE",
            "parameters": ["arn:aws:iam::358363220050:role/x"], "reason": "Bad Request"}"#;
        let err = AtlasError::from_response("PATCH", EP, 400, body, None);
        assert_eq!(err.error_code(), Some("CANNOT_ASSUME_ROLE"));
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.category(), "atlas_bad_request");
        assert!(!err.is_transient());
        let AtlasError::Api {
            parameters, detail, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            parameters,
            &vec![serde_json::json!("arn:aws:iam::358363220050:role/x")]
        );
        assert!(detail.starts_with("Atlas cannot assume"));
    }

    #[test]
    fn numeric_parameters_and_rate_limits() {
        let body = br#"{"detail":"Rate limit exceeded for api/atlas/v2/orgs. Please retry after 55 seconds.","error":429,"errorCode":"RATE_LIMITED_TOKEN_BUCKET","parameters":["api/atlas/v2/orgs",55,10,5,60],"reason":"Too Many Requests"}"#;
        let env = ErrorEnvelope::parse(body).unwrap();
        assert_eq!(env.parameters[1], serde_json::json!(55));
        let err = AtlasError::from_response("GET", EP, 429, body, Some(Duration::from_secs(55)));
        assert!(matches!(err, AtlasError::RateLimited { .. }));
        assert_eq!(err.error_code(), Some("RATE_LIMITED_TOKEN_BUCKET"));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(55)));
        assert!(err.is_transient());
    }

    #[test]
    fn not_in_group_is_an_api_error_other_401s_are_unauthorized() {
        let nig = br#"{"detail":"not in group","error":401,"errorCode":"NOT_IN_GROUP","parameters":[],"reason":"Unauthorized"}"#;
        let err = AtlasError::from_response("GET", EP, 401, nig, None);
        assert!(matches!(err, AtlasError::Api { status: 401, .. }), "{err:?}");
        let uu = br#"{"detail":"You are not authorized","error":401,"errorCode":"USER_UNAUTHORIZED","parameters":[],"reason":"Unauthorized"}"#;
        let err = AtlasError::from_response("GET", EP, 401, uu, None);
        assert_eq!(err.category(), "atlas_unauthorized");
        assert_eq!(err.error_code(), Some("USER_UNAUTHORIZED"));
    }

    #[test]
    fn non_envelope_bodies_and_huge_details_are_bounded() {
        let err = AtlasError::from_response("GET", EP, 502, b"<html>bad gateway</html>", None);
        assert_eq!(err.error_code(), Some("UNKNOWN"));
        assert!(err.is_transient());
        assert_eq!(err.category(), "atlas_server_error");
        let long = serde_json::json!({"errorCode": "X", "detail": "d".repeat(100_000)}).to_string();
        let err = AtlasError::from_response("GET", EP, 400, long.as_bytes(), None);
        assert!(err.to_string().len() < 1300);
    }
}
