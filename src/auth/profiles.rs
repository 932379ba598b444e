//! User profiles for presence payloads: `{"id":…,"name":…,"avatar_url":…}`, the keys
//! in the order the Rails app's `as_json(only: [:id, :name, :avatar_url])` gives them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use crate::protocol::json;

/// A user as presence payloads show it. The JSON is encoded once, when the profile is
/// made, and shared by every payload that names the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    /// The Rails user id.
    pub id: i64,
    /// `name`, or null.
    pub name: Option<String>,
    /// `avatar_url`, or null.
    pub avatar_url: Option<String>,
    json: Bytes,
}

impl UserProfile {
    /// A profile; its JSON is encoded here, once.
    pub fn new(id: i64, name: Option<String>, avatar_url: Option<String>) -> Self {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        out.extend_from_slice(b",\"name\":");
        match &name {
            Some(n) => json::write_str(&mut out, n),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"avatar_url\":");
        match &avatar_url {
            Some(a) => json::write_str(&mut out, a),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        UserProfile {
            id,
            name,
            avatar_url,
            json: Bytes::from(out),
        }
    }

    /// The encoded `user` object.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// A profile source failed (not: the user does not exist).
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The users file could not be read.
    #[error("cannot read users file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The users file is not valid JSON or TOML of the expected shape.
    #[error("users file {path} is invalid: {why}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The profile database failed or is misconfigured (the text never holds a password).
    #[error("profile database: {0}")]
    Database(String),
}

/// Where profiles come from.
#[async_trait]
pub trait ProfileSource: Send + Sync + 'static {
    /// The profile of user `id`, or `None` when there is no such user.
    ///
    /// # Errors
    /// When the source itself fails.
    async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError>;

    /// Checks that the source can answer (connects, prepares its query), once, before
    /// the server binds. In-memory sources have nothing to check.
    ///
    /// # Errors
    /// When the source is unusable; the server then does not start.
    async fn check(&self) -> Result<(), ProfileError> {
        Ok(())
    }
}

/// Every id is a user; name and avatar_url are null.
pub struct IdOnly;

#[async_trait]
impl ProfileSource for IdOnly {
    async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError> {
        Ok(Some(Arc::new(UserProfile::new(id, None, None))))
    }
}

#[derive(Deserialize)]
struct Row {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
}

#[derive(Deserialize)]
struct TomlFile {
    users: Vec<Row>,
}

/// Users read from a file; ids not in the file are not users.
///
/// JSON: `[{"id":1,"name":"Alice","avatar_url":"…"}, …]`.
/// TOML: `[[users]]` tables with `id`, `name`, `avatar_url`.
pub struct UsersFile {
    users: HashMap<i64, Arc<UserProfile>>,
}

impl UsersFile {
    /// Reads `path` (`.toml` is TOML, anything else JSON).
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: shown.clone(),
            source,
        })?;
        let rows: Vec<Row> = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str::<TomlFile>(&text)
                .map_err(|e| ProfileError::Parse {
                    path: shown,
                    why: e.to_string(),
                })?
                .users
        } else {
            serde_json::from_str(&text).map_err(|e| ProfileError::Parse {
                path: shown,
                why: e.to_string(),
            })?
        };
        Ok(Self::from_profiles(
            rows.into_iter()
                .map(|r| UserProfile::new(r.id, r.name, r.avatar_url))
                .collect(),
        ))
    }

    /// A source holding exactly `profiles`.
    pub fn from_profiles(profiles: Vec<UserProfile>) -> Self {
        UsersFile {
            users: profiles.into_iter().map(|p| (p.id, Arc::new(p))).collect(),
        }
    }

    /// How many users the file holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file holds no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[async_trait]
impl ProfileSource for UsersFile {
    async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError> {
        Ok(self.users.get(&id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_json_matches_rails_as_json() {
        let p = UserProfile::new(
            1,
            Some("Alice".into()),
            Some("https://example.test/avatars/alice.png".into()),
        );
        assert_eq!(
            p.json(),
            br#"{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"}"#
        );
        assert_eq!(
            UserProfile::new(4, Some("Dave".into()), None).json(),
            br#"{"id":4,"name":"Dave","avatar_url":null}"#
        );
    }

    #[tokio::test]
    async fn users_file_reads_json_and_toml() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = dir.path().join("users.json");
        std::fs::write(
            &j,
            r#"[{"id":1,"name":"Alice","avatar_url":null},{"id":2,"name":"Bob"}]"#,
        )
        .expect("write");
        let t = dir.path().join("users.toml");
        std::fs::write(
            &t,
            "[[users]]\nid = 3\nname = \"Carol\"\navatar_url = \"x\"\n",
        )
        .expect("write");
        let fj = UsersFile::load(&j).expect("json file");
        assert_eq!(fj.len(), 2);
        assert_eq!(
            fj.lookup(2)
                .await
                .expect("ok")
                .expect("bob")
                .name
                .as_deref(),
            Some("Bob")
        );
        assert!(fj.lookup(999).await.expect("ok").is_none());
        let ft = UsersFile::load(&t).expect("toml file");
        assert_eq!(
            ft.lookup(3)
                .await
                .expect("ok")
                .expect("carol")
                .avatar_url
                .as_deref(),
            Some("x")
        );
        std::fs::write(&j, "{").expect("write");
        assert!(matches!(
            UsersFile::load(&j),
            Err(ProfileError::Parse { .. })
        ));
    }
}
