//! Plain stream channels: `stream_from "chat_#{params[:room]}"` and the like,
//! declared as data instead of Ruby, plus the bare base channel classes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{ChannelError, Ctx, Performed, Subscription};
use crate::broker::SharedBroker;
use crate::protocol::{json, ChannelParams};

/// A declared stream channel, e.g. the reference app's `ChatChannel`:
///
/// ```toml
/// [[channels]]
/// name = "ChatChannel"
/// stream = "chat_{room}"
/// required = ["room"]            # optional: reject when missing or blank
/// # user_param = "user_id"        # optional: the param must be the user's own id
/// [channels.actions]
/// speak = ["text"]
/// ```
#[derive(Debug, Clone, Deserialize)]
pub struct StreamChannelSpec {
    /// The Rails class name.
    pub name: String,
    /// The stream name; `{param}` is replaced by the param as Ruby interpolates it (a
    /// missing param becomes the empty string).
    pub stream: String,
    /// Actions that re-broadcast the listed `data` fields (in that order, missing ones
    /// as null) to the stream, with `user_id` added, as `ChatChannel#speak` does.
    #[serde(default)]
    pub actions: HashMap<String, Vec<String>>,
    /// Params that must be present and non-blank; otherwise the subscription is
    /// rejected (`reject unless params[:room].present?`).
    #[serde(default)]
    pub required: Vec<String>,
    /// A param that must equal the connection's user id, for per-user streams
    /// (`reject unless params[:user_id].to_i == current_user.id`).
    #[serde(default)]
    pub user_param: Option<String>,
}

/// A channel streaming from one stream named from its params.
pub struct StreamChannel {
    spec: Arc<StreamChannelSpec>,
    broker: SharedBroker,
}

impl StreamChannel {
    /// A channel from `spec`, broadcasting actions through `broker`.
    pub fn new(spec: StreamChannelSpec, broker: SharedBroker) -> Self {
        StreamChannel {
            spec: Arc::new(spec),
            broker,
        }
    }
}

/// Renders `template`, replacing each `{name}` by the param's text.
pub fn render_stream(template: &str, params: &ChannelParams) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(&params.param_text(&after[..close]).unwrap_or_default());
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[async_trait]
impl super::Channel for StreamChannel {
    async fn subscribe(
        &self,
        ctx: &Ctx<'_>,
        params: &ChannelParams,
    ) -> Result<Option<Box<dyn Subscription>>, ChannelError> {
        let blank = |p: &str| params.param_text(p).is_none_or(|t| t.trim().is_empty());
        if self.spec.required.iter().any(|p| blank(p)) {
            return Ok(None);
        }
        if let Some(p) = &self.spec.user_param {
            let own = params
                .param_text(p)
                .and_then(|t| t.trim().parse::<i64>().ok());
            if own != Some(ctx.identity.user_id) {
                return Ok(None);
            }
        }
        let stream: Arc<str> = Arc::from(render_stream(&self.spec.stream, params));
        Ok(Some(Box::new(StreamSubscription {
            streams: [stream],
            spec: self.spec.clone(),
            broker: self.broker.clone(),
        })))
    }
}

struct StreamSubscription {
    streams: [Arc<str>; 1],
    spec: Arc<StreamChannelSpec>,
    broker: SharedBroker,
}

#[async_trait]
impl Subscription for StreamSubscription {
    fn streams(&self) -> &[Arc<str>] {
        &self.streams
    }

    async fn perform(
        &mut self,
        ctx: &Ctx<'_>,
        action: &str,
        data: &Map<String, Value>,
    ) -> Result<Performed, ChannelError> {
        let Some(fields) = self.spec.actions.get(action) else {
            return Ok(Performed::UnknownAction);
        };
        let mut out = Vec::with_capacity(64);
        out.push(b'{');
        for field in fields {
            json::write_str(&mut out, field);
            out.push(b':');
            json::write_value(&mut out, data.get(field).unwrap_or(&Value::Null));
            out.push(b',');
        }
        out.extend_from_slice(b"\"user_id\":");
        out.extend_from_slice(itoa::Buffer::new().format(ctx.identity.user_id).as_bytes());
        out.push(b'}');
        self.broker.publish(&self.streams[0], out.into()).await?;
        Ok(Performed::Done)
    }
}

/// `ApplicationCable::Channel` or `ActionCable::Channel::Base` subscribed directly:
/// Rails 6.1 confirms these with no stream, and so do we.
pub struct BareChannel;

#[async_trait]
impl super::Channel for BareChannel {
    async fn subscribe(
        &self,
        _ctx: &Ctx<'_>,
        _params: &ChannelParams,
    ) -> Result<Option<Box<dyn Subscription>>, ChannelError> {
        Ok(Some(Box::new(ListenOnly(None))))
    }
}

/// A subscription that listens to at most one stream and has no actions (a bare
/// channel, a Turbo stream).
pub struct ListenOnly(pub Option<Arc<str>>);

#[async_trait]
impl Subscription for ListenOnly {
    fn streams(&self) -> &[Arc<str>] {
        self.0.as_slice()
    }

    async fn perform(
        &mut self,
        _ctx: &Ctx<'_>,
        _action: &str,
        _data: &Map<String, Value>,
    ) -> Result<Performed, ChannelError> {
        Ok(Performed::UnknownAction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Identifier;

    #[test]
    fn stream_names_interpolate_like_ruby() {
        let p = Identifier::new(r#"{"channel":"ChatChannel","room":"lobby","n":3}"#)
            .params()
            .expect("valid");
        assert_eq!(render_stream("chat_{room}", &p), "chat_lobby");
        assert_eq!(render_stream("x:{n}:{missing}:{", &p), "x:3::{");
    }
}
