//! What the decision tests of both kinds share.

use crate::atlas::AtlasError;
use crate::controller::Step;
use crate::status::Outcome;

/// How a step ends the pass, as kstatus sees it, and its reason.
pub fn kind(step: &Step) -> (&'static str, &str) {
    let kind = match step.outcome {
        Outcome::Ready { .. } => "Ready",
        Outcome::Progressing { .. } => "Progressing",
        Outcome::Stalled { .. } => "Stalled",
    };
    (kind, step.outcome.reason())
}

/// An Atlas error answer with `status` and `code`, as the client parses it.
pub fn atlas_error(status: u16, code: &str) -> AtlasError {
    let body = format!(r#"{{"detail":"d","error":{status},"errorCode":"{code}","parameters":[]}}"#);
    AtlasError::from_response("PATCH", "/groups/{groupId}", status, body.as_bytes(), None)
}
