//! The development identifier: the user id comes from a query parameter.
//!
//! Anyone can claim any user with it, so it is off by default and the server logs a
//! loud warning when it is on. It stands in until Rails cookies are configured.

use super::{Found, HandshakeRequest, Identify};

/// Takes the user id from query parameter `param` (e.g. `/cable?user_id=1`).
pub struct QueryParamIdentifier {
    param: String,
}

impl QueryParamIdentifier {
    /// Reads the user id from query parameter `param`.
    pub fn new(param: impl Into<String>) -> Self {
        QueryParamIdentifier {
            param: param.into(),
        }
    }
}

impl Identify for QueryParamIdentifier {
    fn name(&self) -> &'static str {
        "dev_query_param"
    }

    fn identify(&self, req: &HandshakeRequest) -> Found {
        match req.query_param(&self.param) {
            None => Found::Nothing,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(id) => Found::User(id),
                Err(_) => Found::Invalid("user id is not an integer".into()),
            },
        }
    }
}
