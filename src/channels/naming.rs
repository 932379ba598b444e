//! Broadcasting names as Rails derives them from channel classes and models:
//! `stream_for room` in `ChatChannel` streams from `ChatChannel.broadcasting_for(room)`.
//!
//! - `channel_name`: the class name without a trailing `Channel`, `::` replaced by `:`,
//!   then underscored (ActiveSupport's `String#underscore`, without app-specific
//!   acronym inflections): `ChatChannel` → `chat`, `Admin::WebNotificationsChannel` →
//!   `admin:web_notifications`.
//! - `broadcasting_for(model)`: `<channel_name>:<model.to_gid_param>`.
//! - `to_gid_param`: the GlobalID URI `gid://<app>/<Model>/<id>` (the id CGI-escaped, as
//!   globalid ≥ 1.0 builds it) in URL-safe base64 **without padding**
//!   (`Base64.urlsafe_encode64(to_s, padding: false)`).
//!
//! Pure functions, unit-tested against vectors computed from the documented
//! algorithms (`../shared/spec/redis-adapter.md` §3.1) and cross-checked with real
//! actioncable 6.1.7, activesupport 6.1.7 and globalid 0.6 (Debian's Ruby packages).

use base64::Engine;

/// ActiveSupport's `underscore` for a constant path without `::` (what
/// `channel_name` feeds it): `_` between a lowercase letter or digit and an uppercase
/// letter, and before the last capital of a run followed by a lowercase letter
/// (`HTMLParser` → `html_parser`); `-` becomes `_`; then lowercased.
pub fn underscore(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let after_lower = prev.is_ascii_lowercase() || prev.is_ascii_digit();
            let ends_acronym = prev.is_ascii_uppercase() && next_lower;
            if after_lower || ends_acronym {
                out.push('_');
            }
        }
        match c {
            '-' => out.push('_'),
            _ => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// `SomeChannel.channel_name` for the class called `class_name`.
pub fn channel_name(class_name: &str) -> String {
    let base = class_name.strip_suffix("Channel").unwrap_or(class_name);
    // `::` → `:` first, so `underscore` never turns it into `/`.
    base.split("::")
        .map(underscore)
        .collect::<Vec<_>>()
        .join(":")
}

/// Ruby's `CGI.escape`: unreserved characters (`a-zA-Z0-9_.-~`) kept, space as `+`,
/// every other byte as `%XX` (uppercase hex).
pub fn cgi_escape(s: &str) -> String {
    crate::auth::rails::cookie_jar::form_escape(s, |b| matches!(b, b'_' | b'.' | b'-' | b'~'))
}

/// `model.to_gid_param` for the record of class `model` with primary key `id` in the
/// GlobalID app `app`.
pub fn gid_param(app: &str, model: &str, id: &str) -> String {
    let uri = format!("gid://{app}/{model}/{}", cgi_escape(id));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uri)
}

/// `ChannelClass.broadcasting_for(record)`, given the channel's `channel_name`.
pub fn broadcasting_for(channel_name: &str, app: &str, model: &str, id: &str) -> String {
    format!("{channel_name}:{}", gid_param(app, model, id))
}

/// Whether `app` is usable as a GlobalID app name (a URI host: letters, digits and
/// hyphens), as `URI::GID.validate_app` requires.
pub fn valid_gid_app(app: &str) -> bool {
    !app.is_empty() && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_rails_naming() {
        // Rails' own doc examples (naming.rb) and the spec's (§3.1); `Admin::Rooms`,
        // `HTMLParser` and `APIKeys` also checked with real actioncable 6.1.7.
        for (class, name) in [
            ("ChatChannel", "chat"),
            ("Chats::AppearancesChannel", "chats:appearances"),
            (
                "FooChats::BarAppearancesChannel",
                "foo_chats:bar_appearances",
            ),
            ("Admin::WebNotificationsChannel", "admin:web_notifications"),
            ("Admin::RoomsChannel", "admin:rooms"),
            ("HTMLParserChannel", "html_parser"),
            ("APIKeysChannel", "api_keys"),
            ("Room2Channel", "room2"),
            ("V2::RoomChannel", "v2:room"),
            ("ChannelsChannel", "channels"),
            ("Chat", "chat"),
        ] {
            assert_eq!(channel_name(class), name, "{class}");
        }
    }

    #[test]
    fn gid_params_are_unpadded_urlsafe_base64() {
        // The spec's vectors (computed with actioncable 6.1.7 and globalid); ours agree
        // with `RoomChannel.broadcasting_for(room7)` = "room:Z2lk…Nw" under real Rails.
        assert_eq!(
            gid_param("my-app", "User", "42"),
            "Z2lkOi8vbXktYXBwL1VzZXIvNDI"
        );
        assert_eq!(
            gid_param("my-app", "Room", "7"),
            "Z2lkOi8vbXktYXBwL1Jvb20vNw"
        );
        assert_eq!(
            broadcasting_for("chat", "my-app", "Room", "7"),
            "chat:Z2lkOi8vbXktYXBwL1Jvb20vNw"
        );
        assert_eq!(
            broadcasting_for(
                &channel_name("Admin::WebNotificationsChannel"),
                "my-app",
                "User",
                "42"
            ),
            "admin:web_notifications:Z2lkOi8vbXktYXBwL1VzZXIvNDI"
        );
        // By hand: "gid://refapp/Room/1" is 19 bytes, so standard base64 would end in
        // one "=" (and "+"/"/" never occur here): "Z2lkOi8vcmVmYXBwL1Jvb20vMQ==".
        assert_eq!(
            gid_param("refapp", "Room", "1"),
            "Z2lkOi8vcmVmYXBwL1Jvb20vMQ"
        );
        // A key whose standard base64 has '+' and padding ("…L35+fiUzRg=="; checked
        // with Python's base64): URL-safe alphabet, no '='.
        assert_eq!(gid_param("a", "M", "~~~?"), "Z2lkOi8vYS9NL35-fiUzRg");
    }

    #[test]
    fn string_ids_are_cgi_escaped() {
        assert_eq!(cgi_escape("a b/c?é"), "a+b%2Fc%3F%C3%A9");
        assert_eq!(cgi_escape("uuid-1_2.3~"), "uuid-1_2.3~");
        // `Doc.new("a b").to_gid_param` with globalid 0.6 and GlobalID.app = "refapp".
        assert_eq!(
            gid_param("refapp", "Doc", "a b"),
            "Z2lkOi8vcmVmYXBwL0RvYy9hK2I"
        );
    }

    #[test]
    fn gid_apps_are_hostnames() {
        assert!(valid_gid_app("my-app") && valid_gid_app("refapp"));
        assert!(!valid_gid_app("") && !valid_gid_app("my_app") && !valid_gid_app("a/b"));
    }
}
