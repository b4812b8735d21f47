//! The one error type of the HTTP API: a status and a message that is safe to show.
//!
//! On the wire it is `{"message": "..."}`; the status travels as the HTTP status. Internal causes
//! are logged where they happen and never put into `message`.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub message: String,
    /// Only meaningful on the server, where it becomes the response status.
    #[serde(skip, default = "internal_status")]
    pub status: u16,
    /// Seconds for a `Retry-After` header (with 429 and 503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

fn internal_status() -> u16 {
    500
}

impl ApiError {
    /// The message of every 401. The browser keys its "go to sign in" behaviour on it, since
    /// the status itself does not reach a server function's caller.
    pub const UNAUTHENTICATED: &'static str = "Please sign in.";

    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(401, Self::UNAUTHENTICATED)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }

    pub fn internal() -> Self {
        Self::new(500, "Something went wrong on our side. Please try again.")
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.message == Self::UNAUTHENTICATED
    }
}

impl From<crate::domain::ParseError> for ApiError {
    fn from(e: crate::domain::ParseError) -> Self {
        Self::bad_request(e.0)
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let error = match &value {
            // A body that does not parse is the caller's mistake, never a 500.
            ServerFnErrorErr::Args(e) | ServerFnErrorErr::Deserialization(e) => {
                Self::bad_request(format!("Invalid request body: {e}"))
            }
            ServerFnErrorErr::Request(e) => Self::new(503, format!("Network error: {e}")),
            _ => Self::internal(),
        };
        #[cfg(feature = "ssr")]
        {
            if error.status == 500 {
                tracing::error!(error = %value, "server function failed");
            }
            crate::service::set_response_status(error.status);
        }
        error
    }
}
