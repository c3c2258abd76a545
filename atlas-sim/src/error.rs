//! Atlas's error envelope. Every refusal the simulator makes goes through [`ApiError`], so the wire shape
//! (`{detail, error, errorCode, parameters, reason}`, `application/json`) is decided in one place.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The errorCode of a refusal, carried in response extensions so the call log can record it.
#[derive(Clone, Debug)]
pub struct ErrorCode(pub Cow<'static, str>);

#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub detail: String,
    pub parameters: Vec<Value>,
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.into(),
            detail: detail.into(),
            parameters: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn params<I, V>(mut self, params: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Value>,
    {
        self.parameters = params.into_iter().map(Into::into).collect();
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn body(&self) -> Value {
        json!({
            "detail": self.detail,
            "error": self.status.as_u16(),
            "errorCode": self.code,
            "parameters": self.parameters,
            "reason": self.status.canonical_reason().unwrap_or("Unknown"),
        })
    }

    // Constructors for the codes used in more than one place.
    pub fn user_unauthorized() -> Self {
        ApiError::new(
            401,
            "USER_UNAUTHORIZED",
            "You are not authorized for this resource.",
        )
    }
    pub fn not_in_group(group_id: &str) -> Self {
        ApiError::new(
            401,
            "NOT_IN_GROUP",
            format!("Current user is not in the group, or the group does not exist ({group_id})."),
        )
        .params([group_id])
    }
    pub fn group_not_found(group_id: &str) -> Self {
        ApiError::new(
            404,
            "GROUP_NOT_FOUND",
            format!("No group with ID {group_id} exists."),
        )
        .params([group_id])
    }
    pub fn invalid_group_id(group_id: &str) -> Self {
        ApiError::new(
            404,
            "INVALID_GROUP_ID",
            format!("The specified group ID {group_id} is invalid."),
        )
        .params([group_id])
    }
    pub fn resource_not_found(what: &str) -> Self {
        ApiError::new(404, "RESOURCE_NOT_FOUND", format!("Cannot find resource {what}.")).params([what])
    }
    pub fn cluster_not_found(name: &str, group_id: &str) -> Self {
        ApiError::new(
            404,
            "CLUSTER_NOT_FOUND",
            format!("No cluster named {name} exists in group {group_id}."),
        )
        .params([name, group_id])
    }
    pub fn invalid_attribute(attr: &str) -> Self {
        ApiError::new(
            400,
            "INVALID_ATTRIBUTE",
            format!("Invalid attribute {attr} specified."),
        )
        .params([attr])
    }
    pub fn missing_attribute(attr: &str) -> Self {
        ApiError::new(
            400,
            "MISSING_ATTRIBUTE",
            format!("The required attribute {attr} was not specified."),
        )
        .params([attr])
    }
    pub fn invalid_enum(value: &str, attr: &str) -> Self {
        ApiError::new(
            400,
            "INVALID_ENUM_VALUE",
            format!("An invalid enumeration value {value} was specified for {attr}."),
        )
        .params([value, attr])
    }
    pub fn malformed_json() -> Self {
        ApiError::new(400, "MALFORMED_JSON", "Received JSON is malformed.")
    }
    pub fn invalid_json() -> Self {
        ApiError::new(
            400,
            "INVALID_JSON",
            "Received JSON does not match expected format.",
        )
    }
    pub fn invalid_path_parameter(name: &str, value: &str) -> Self {
        ApiError::new(
            400,
            "INVALID_PATH_PARAMETER",
            format!("The path parameter {name} has an invalid value {value}."),
        )
        .params([name, value])
    }
    pub fn invalid_query_parameter(name: &str) -> Self {
        ApiError::new(
            400,
            "INVALID_QUERY_PARAMETER",
            format!("Invalid query parameter {name} specified."),
        )
        .params([name])
    }
    pub fn unexpected(detail: impl Into<String>) -> Self {
        ApiError::new(500, "UNEXPECTED_ERROR", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().append(name.clone(), v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code.clone()));
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
