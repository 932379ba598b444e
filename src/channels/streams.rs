//! Declared stream channels: `stream_from "chat_#{params[:room]}"`, `stream_for room`
//! and their usual guards (required params, "the param is my user id", membership of
//! a Redis set), declared as data instead of Ruby; plus the bare base channel classes.
//!
//! Declarations are checked once at startup ([`check_declarations`]); a channel that
//! passed the check cannot fail to build.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::membership::Membership;
use super::naming;
use super::{ChannelError, Ctx, Performed, Subscription};
use crate::broker::SharedBroker;
use crate::protocol::ruby::Uninterpolable;
use crate::protocol::{json, ChannelParams};

/// A declared stream channel, e.g. the reference app's `ChatChannel`:
///
/// ```toml
/// [[channels]]
/// name = "ChatChannel"
/// stream = "chat_{room}"         # or: stream_for = { model = "Room", param = "room_id" }
/// required = ["room"]            # optional: reject when missing or blank
/// # user_param = "user_id"        # optional: the param must be the user's own id
/// # member_of = "room:{room}:allowed"  # optional, Redis mode: SISMEMBER <set> <user id>
/// [channels.actions]
/// speak = ["text"]
/// ```
///
/// Unknown fields are refused, so a typo is an error at startup, not a silently
/// missing rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamChannelSpec {
    /// The Rails class name.
    pub name: String,
    /// The stream name (`stream_from`); `{param}` is replaced by the param as Ruby
    /// interpolates it (a missing param becomes the empty string, unless `required`),
    /// `{current_user.id}` by the connection's user id.
    #[serde(default)]
    pub stream: Option<String>,
    /// A model stream (`stream_for`), named as `broadcasting_for` names it.
    #[serde(default)]
    pub stream_for: Option<StreamForSpec>,
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
    /// A Redis set, named from params like `stream`, that must contain the user id
    /// (`reject unless redis.sismember("room:#{params[:room]}:allowed", current_user.id)`).
    /// Its params are required. Redis mode only.
    #[serde(default)]
    pub member_of: Option<String>,
}

/// `stream_for Model.find(params[:param])`, or `stream_for current_user`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamForSpec {
    /// The model's class name in GlobalIDs (`Room`, `Admin::Room`).
    pub model: String,
    /// The param holding the record's id; required.
    #[serde(default)]
    pub param: Option<String>,
    /// The record is the connection's user (`stream_for current_user`); instead of
    /// `param`.
    #[serde(default)]
    pub current_user: bool,
    /// How the id is read.
    #[serde(default)]
    pub id: IdKind,
    /// The channel's `channel_name`, when the app overrides it or its inflections have
    /// acronyms; default: derived from `name` as Rails does.
    #[serde(default)]
    pub channel_name: Option<String>,
}

/// The type of a model's primary key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// An integer: `7`, `"7"` and `"07"` name record 7 (as `find` casts them); anything
    /// else is rejected (`find` would raise).
    #[default]
    Integer,
    /// A string key (UUIDs and the like), used as given.
    String,
}

/// What declarations are checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeclarationContext<'a> {
    /// Whether the server runs in Redis mode.
    pub redis: bool,
    /// `--globalid-app`.
    pub globalid_app: Option<&'a str>,
}

/// A channel declaration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ChannelSpecError {
    /// The same class name is declared twice.
    #[error("channel {0:?} is declared twice")]
    Duplicate(String),
    /// Neither or both of `stream` and `stream_for`.
    #[error("channel {0:?}: set exactly one of `stream` and `stream_for`")]
    StreamChoice(String),
    /// A name template is malformed.
    #[error("channel {channel:?}: {field} {template:?} {why}")]
    BadTemplate {
        /// The channel.
        channel: String,
        /// `stream` or `member_of`.
        field: &'static str,
        /// The template.
        template: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `member_of` outside Redis mode.
    #[error("channel {0:?}: member_of checks a Redis set and needs Redis mode (--redis-url / REDIS_URL)")]
    MemberOfWithoutRedis(String),
    /// `stream_for` without a GlobalID app name.
    #[error("channel {0:?}: stream_for names records by GlobalID and needs --globalid-app (FERROCABLE_GLOBALID_APP)")]
    StreamForWithoutApp(String),
    /// Anything else (empty names, a reserved action field).
    #[error("channel {channel:?}: {what}")]
    Invalid {
        /// The channel.
        channel: String,
        /// What is wrong.
        what: String,
    },
}

/// The param names a template interpolates, or why it is malformed.
pub fn template_params(template: &str) -> Result<Vec<&str>, &'static str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("has a '{' without a closing '}'")?;
        let name = &after[..close];
        if name.trim().is_empty() {
            return Err("has an empty '{}'");
        }
        if name.contains('{') {
            return Err("has a '{' inside '{…}'");
        }
        out.push(name);
        rest = &after[close + 1..];
    }
    Ok(out)
}

impl StreamChannelSpec {
    /// Checks one declaration.
    ///
    /// # Errors
    /// The first problem found, naming the channel.
    pub fn check(&self, ctx: &DeclarationContext<'_>) -> Result<(), ChannelSpecError> {
        let channel = || self.name.clone();
        let invalid = |what: String| ChannelSpecError::Invalid {
            channel: self.name.clone(),
            what,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("the name must not be empty".into()));
        }
        let template = |field: &'static str, t: &str| {
            template_params(t)
                .map(|_| ())
                .map_err(|why| ChannelSpecError::BadTemplate {
                    channel: channel(),
                    field,
                    template: t.to_owned(),
                    why,
                })
        };
        match (&self.stream, &self.stream_for) {
            (Some(t), None) => template("stream", t)?,
            (None, Some(sf)) => {
                let Some(app) = ctx.globalid_app else {
                    return Err(ChannelSpecError::StreamForWithoutApp(channel()));
                };
                if !naming::valid_gid_app(app) {
                    return Err(invalid(format!(
                        "--globalid-app {app:?} is not a GlobalID app name (letters, digits and '-')"
                    )));
                }
                if sf.model.trim().is_empty() || sf.model.contains('/') {
                    return Err(invalid(format!(
                        "stream_for model {:?} is not a class name",
                        sf.model
                    )));
                }
                match (&sf.param, sf.current_user) {
                    (Some(p), false) if !p.trim().is_empty() => {}
                    (None, true) => {}
                    _ => {
                        return Err(invalid(
                            "stream_for needs exactly one of a non-empty `param` and `current_user = true`"
                                .into(),
                        ))
                    }
                }
            }
            _ => return Err(ChannelSpecError::StreamChoice(channel())),
        }
        if let Some(t) = &self.member_of {
            template("member_of", t)?;
            if !ctx.redis {
                return Err(ChannelSpecError::MemberOfWithoutRedis(channel()));
            }
        }
        if self
            .required
            .iter()
            .chain(&self.user_param)
            .any(|p| p.trim().is_empty())
        {
            return Err(invalid("a param name must not be empty".into()));
        }
        for (action, fields) in &self.actions {
            if fields.iter().any(|f| f == "user_id") {
                return Err(invalid(format!(
                    "action {action:?} lists \"user_id\", which ferrocable adds itself"
                )));
            }
        }
        Ok(())
    }
}

/// Checks every declaration and that no class name is declared twice.
///
/// # Errors
/// The first problem found.
pub fn check_declarations(
    specs: &[StreamChannelSpec],
    ctx: &DeclarationContext<'_>,
) -> Result<(), ChannelSpecError> {
    let mut seen = HashSet::new();
    for spec in specs {
        spec.check(ctx)?;
        if !seen.insert(spec.name.as_str()) {
            return Err(ChannelSpecError::Duplicate(spec.name.clone()));
        }
    }
    Ok(())
}

/// What a declared channel uses besides its declaration.
#[derive(Clone)]
pub struct StreamChannelDeps {
    /// Where actions broadcast.
    pub broker: SharedBroker,
    /// `--globalid-app`, for `stream_for`.
    pub globalid_app: Option<String>,
    /// The `member_of` checker (Redis mode).
    pub membership: Option<Arc<dyn Membership>>,
}

/// How the stream is named, resolved at startup.
enum StreamName {
    Template(String),
    Model {
        prefix: String,
        app: String,
        model: String,
        /// `None`: the connection's user.
        param: Option<String>,
        id: IdKind,
    },
}

/// A channel streaming from one stream named from its params.
pub struct StreamChannel {
    spec: Arc<StreamChannelSpec>,
    stream: StreamName,
    /// `required`, plus the params `member_of` and `stream_for` use.
    required: Vec<String>,
    member_of: Option<(String, Arc<dyn Membership>)>,
    broker: SharedBroker,
}

impl StreamChannel {
    /// A channel from `spec` (checked with [`StreamChannelSpec::check`]).
    ///
    /// # Errors
    /// When `spec` does not pass the check against `deps` (no Redis for `member_of`,
    /// no GlobalID app for `stream_for`).
    pub fn new(spec: StreamChannelSpec, deps: StreamChannelDeps) -> Result<Self, ChannelSpecError> {
        spec.check(&DeclarationContext {
            redis: deps.membership.is_some(),
            globalid_app: deps.globalid_app.as_deref(),
        })?;
        let mut required = spec.required.clone();
        let stream = match (&spec.stream, &spec.stream_for, &deps.globalid_app) {
            (_, Some(sf), Some(app)) => {
                required.extend(sf.param.clone());
                StreamName::Model {
                    prefix: sf
                        .channel_name
                        .clone()
                        .unwrap_or_else(|| naming::channel_name(&spec.name)),
                    app: app.clone(),
                    model: sf.model.clone(),
                    param: sf.param.clone(),
                    id: sf.id,
                }
            }
            (Some(t), _, _) => StreamName::Template(t.clone()),
            _ => return Err(ChannelSpecError::StreamChoice(spec.name.clone())),
        };
        let member_of = match (&spec.member_of, deps.membership) {
            (Some(t), Some(m)) => {
                required.extend(
                    template_params(t)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| *p != CURRENT_USER_ID)
                        .map(str::to_owned),
                );
                Some((t.clone(), m))
            }
            (Some(_), None) => {
                return Err(ChannelSpecError::MemberOfWithoutRedis(spec.name.clone()))
            }
            (None, _) => None,
        };
        Ok(StreamChannel {
            spec: Arc::new(spec),
            stream,
            required,
            member_of,
            broker: deps.broker,
        })
    }

    /// The stream for `params` and `user`, or `None` when they name no record.
    ///
    /// # Errors
    /// When a param it interpolates is an array or an object.
    fn stream_for(
        &self,
        params: &ChannelParams,
        user: i64,
    ) -> Result<Option<String>, Uninterpolable> {
        Ok(match &self.stream {
            StreamName::Template(t) => Some(render_stream(t, params, user)?),
            StreamName::Model {
                prefix,
                app,
                model,
                param,
                id,
            } => {
                let text = match param {
                    Some(p) => params.param_text(p)?,
                    None => Some(user.to_string()),
                };
                let id = match (id, text) {
                    (_, None) => None,
                    (IdKind::Integer, Some(t)) => {
                        t.trim().parse::<i64>().ok().map(|i| i.to_string())
                    }
                    (IdKind::String, Some(t)) => Some(t),
                };
                id.map(|id| naming::broadcasting_for(prefix, app, model, &id))
            }
        })
    }
}

/// The placeholder for the connection's user id in templates
/// (`stream_from "notifications_#{current_user.id}"`); never read from params.
pub const CURRENT_USER_ID: &str = "current_user.id";

/// Renders `template`, replacing each `{name}` by the param's text as Ruby interpolates
/// it ([`ChannelParams::param_text`]), and `{current_user.id}` by `user`.
///
/// # Errors
/// When an interpolated param is an array or an object.
pub fn render_stream(
    template: &str,
    params: &ChannelParams,
    user: i64,
) -> Result<String, Uninterpolable> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if name == CURRENT_USER_ID {
                    out.push_str(itoa::Buffer::new().format(user));
                } else {
                    out.push_str(&params.param_text(name)?.unwrap_or_default());
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[async_trait]
impl super::Channel for StreamChannel {
    async fn subscribe(
        &self,
        ctx: &Ctx<'_>,
        params: &ChannelParams,
    ) -> Result<Option<Box<dyn Subscription>>, ChannelError> {
        let channel = self.spec.name.as_str();
        // An array or object is present (Rails' `blank?` is false unless it is empty);
        // it is refused below if the stream interpolates it.
        let blank = |p: &str| match params.param_text(p) {
            Ok(text) => text.is_none_or(|t| t.trim().is_empty()),
            Err(Uninterpolable) => false,
        };
        if let Some(p) = self.required.iter().find(|p| blank(p)) {
            tracing::debug!(channel, param = %p, "required param missing: subscription rejected");
            return Ok(None);
        }
        if let Some(p) = &self.spec.user_param {
            let own = params
                .param_text(p)
                .ok()
                .flatten()
                .and_then(|t| t.trim().parse::<i64>().ok());
            if own != Some(ctx.identity.user_id) {
                tracing::info!(channel, param = %p, user = ctx.identity.user_id, "param is not the user's id: subscription rejected");
                return Ok(None);
            }
        }
        let stream = match self.stream_for(params, ctx.identity.user_id) {
            Ok(Some(stream)) => stream,
            Ok(None) => {
                tracing::info!(
                    channel,
                    "stream_for param is not a record id: subscription rejected"
                );
                return Ok(None);
            }
            Err(e) => {
                tracing::info!(channel, error = %e, "subscription rejected");
                return Ok(None);
            }
        };
        if let Some((template, membership)) = &self.member_of {
            let Ok(set) = render_stream(template, params, ctx.identity.user_id) else {
                tracing::info!(
                    channel,
                    "member_of param is an array or object: subscription rejected"
                );
                return Ok(None);
            };
            let user = itoa::Buffer::new().format(ctx.identity.user_id).to_owned();
            if !membership.is_member(&set, &user).await? {
                tracing::info!(channel, set = %crate::protocol::clip(&set), user = ctx.identity.user_id, "not a member: subscription rejected");
                return Ok(None);
            }
        }
        Ok(Some(Box::new(StreamSubscription {
            streams: [Arc::from(stream)],
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
        let p = Identifier::new(
            r#"{"channel":"ChatChannel","room":"lobby","n":3,"f":1.50,"e":1e2,"l":[1],"h":{}}"#,
        )
        .params()
        .expect("valid");
        let render = |t: &str, user| render_stream(t, &p, user);
        assert_eq!(render("chat_{room}", 9).as_deref(), Ok("chat_lobby"));
        assert_eq!(render("x:{n}:{missing}:{", 9).as_deref(), Ok("x:3::{"));
        assert_eq!(render("n_{current_user.id}", 42).as_deref(), Ok("n_42"));
        // Floats as Ruby's `to_s` writes them, so Rails nodes use the same stream.
        assert_eq!(render("r_{f}_{e}", 9).as_deref(), Ok("r_1.5_100.0"));
        // Arrays and objects are refused, not written some other way than Ruby's.
        assert_eq!(render("r_{l}", 9), Err(Uninterpolable));
        assert_eq!(render("r_{h}", 9), Err(Uninterpolable));
        // The placeholder is never read from params.
        let spoof = Identifier::new(r#"{"channel":"C","current_user.id":1}"#)
            .params()
            .expect("valid");
        assert_eq!(
            render_stream("n_{current_user.id}", &spoof, 42).as_deref(),
            Ok("n_42")
        );
    }

    fn spec(toml_text: &str) -> Vec<StreamChannelSpec> {
        #[derive(Deserialize)]
        struct File {
            channels: Vec<StreamChannelSpec>,
        }
        toml::from_str::<File>(toml_text).expect("parses").channels
    }

    #[test]
    fn templates_name_their_params() {
        assert_eq!(
            template_params("room:{room}:{org}:x"),
            Ok(vec!["room", "org"])
        );
        assert_eq!(template_params("plain}"), Ok(vec![]));
        assert!(template_params("a{b").is_err());
        assert!(template_params("a{}").is_err());
        assert!(template_params("a{ }").is_err());
        assert!(template_params("a{{b}").is_err());
    }

    #[test]
    fn declarations_are_checked_against_the_mode() {
        let redis = DeclarationContext {
            redis: true,
            globalid_app: Some("refapp"),
        };
        let embedded = DeclarationContext::default();
        let member = spec(
            "[[channels]]\nname = \"R\"\nstream = \"r_{room}\"\nmember_of = \"room:{room}:allowed\"\n",
        );
        assert!(check_declarations(&member, &redis).is_ok());
        assert!(matches!(
            check_declarations(&member, &embedded),
            Err(ChannelSpecError::MemberOfWithoutRedis(n)) if n == "R"
        ));
        let model = spec(
            "[[channels]]\nname = \"R\"\nstream_for = { model = \"Room\", param = \"id\", id = \"string\" }\n",
        );
        assert_eq!(
            model[0].stream_for.as_ref().map(|s| s.id),
            Some(IdKind::String)
        );
        let me = spec(
            "[[channels]]\nname = \"N\"\nstream_for = { model = \"User\", current_user = true }\n",
        );
        assert!(check_declarations(&me, &redis).is_ok());
        let neither = spec("[[channels]]\nname = \"N\"\nstream_for = { model = \"User\" }\n");
        assert!(check_declarations(&neither, &redis).is_err());
        let both = spec("[[channels]]\nname = \"N\"\nstream_for = { model = \"User\", param = \"id\", current_user = true }\n");
        assert!(check_declarations(&both, &redis).is_err());
        assert!(check_declarations(&model, &redis).is_ok());
        assert!(matches!(
            check_declarations(&model, &embedded),
            Err(ChannelSpecError::StreamForWithoutApp(_))
        ));
        let bad_app = DeclarationContext {
            redis: false,
            globalid_app: Some("my_app"),
        };
        assert!(check_declarations(&model, &bad_app).is_err());
        let twice = spec(
            "[[channels]]\nname = \"C\"\nstream = \"a\"\n[[channels]]\nname = \"C\"\nstream = \"b\"\n",
        );
        assert!(matches!(
            check_declarations(&twice, &redis),
            Err(ChannelSpecError::Duplicate(n)) if n == "C"
        ));
        let both = spec(
            "[[channels]]\nname = \"C\"\nstream = \"a\"\nstream_for = { model = \"M\", param = \"id\" }\n",
        );
        assert!(matches!(
            check_declarations(&both, &redis),
            Err(ChannelSpecError::StreamChoice(_))
        ));
        let user_id = spec(
            "[[channels]]\nname = \"C\"\nstream = \"a\"\n[channels.actions]\nspeak = [\"text\", \"user_id\"]\n",
        );
        let e = check_declarations(&user_id, &redis).unwrap_err();
        assert!(e.to_string().contains("\"user_id\""), "{e}");
        let blank = spec("[[channels]]\nname = \" \"\nstream = \"a\"\n");
        assert!(check_declarations(&blank, &redis).is_err());
    }
}
