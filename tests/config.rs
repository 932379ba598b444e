//! The configuration as the real binary reads it: the config file, its precedence
//! under environment variables and flags, `--print-config`, `--rails-root`, and the
//! README's flag table against `--help`.

mod support;

use std::path::Path;
use std::process::Output;

use support::redis::RedisServer;
use support::{confirm, ferrocable_command, CableClient, TestServer, CHANNELS_TOML};

/// Runs `ferrocable ARGS` to completion with `vars` added to a hermetic environment.
fn run(args: &[&str], vars: &[(&str, &str)]) -> Output {
    ferrocable_command()
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .expect("run ferrocable")
}

/// `ferrocable --print-config ARGS`, which must succeed; its stdout.
fn print_config(args: &[&str], vars: &[(&str, &str)]) -> String {
    let mut all = vec!["--print-config"];
    all.extend_from_slice(args);
    let out = run(&all, vars);
    assert!(
        out.status.success(),
        "--print-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn parse(text: &str) -> toml::Table {
    text.parse()
        .unwrap_or_else(|e| panic!("--print-config is not TOML: {e}\n{text}"))
}

/// The line of `--print-config` output that sets `key`.
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// A config file holding `text`, in a new temporary directory.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "ferrocable.toml", text);
    (dir, file)
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let (_dir, file) = config_file(
        "path = \"/from-file\"\nmax_connections = 5\nmax-subscriptions = 6\nnode-ttl = 2.5\n",
    );
    let out = print_config(
        &["--config", &file, "--node-ttl", "4"],
        &[
            ("FERROCABLE_MAX_SUBSCRIPTIONS", "7"),
            ("FERROCABLE_NODE_TTL", "3"),
        ],
    );
    let t = parse(&out);
    assert_eq!(t["path"].as_str(), Some("/from-file"));
    assert_eq!(t["max-connections"].as_integer(), Some(5));
    assert_eq!(t["max-subscriptions"].as_integer(), Some(7));
    assert_eq!(t["node-ttl"].as_integer(), Some(4));
    assert_eq!(t["port"].as_integer(), Some(8080));
    assert!(line(&out, "path").ends_with(&format!("# file {file}")));
    assert!(line(&out, "max-subscriptions").ends_with("# env FERROCABLE_MAX_SUBSCRIPTIONS"));
    assert!(line(&out, "node-ttl").ends_with("# flag --node-ttl"));
    assert!(line(&out, "port").ends_with("# default"));
    // The file can also be named by FERROCABLE_CONFIG.
    let out = print_config(&[], &[("FERROCABLE_CONFIG", &file)]);
    assert_eq!(parse(&out)["max-connections"].as_integer(), Some(5));
}

#[test]
fn print_config_round_trips_through_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "in.toml",
        &format!(
            "allowed-origins = [\"http://a.test\", \"/^https:\\\\/\\\\/b$/\"]\n\
             strict-presence = true\ndrain-window = 1.5\nidentifiers = \"jwt\"\n\
             jwt-claim = \"sub\"\nprofile-cache-ttl = 0\n{CHANNELS_TOML}"
        ),
    );
    let first = print_config(
        &["--config", &file],
        &[("PORT", "9123"), ("FERROCABLE_JWT_SECRET", "k")],
    );
    let again = write(dir.path(), "out.toml", &first);
    // identifiers = jwt needs a JWT key; give it outside the file (a secret).
    let second = print_config(&["--config", &again], &[("FERROCABLE_JWT_SECRET", "k")]);
    let (a, b) = (parse(&first), parse(&second));
    assert_eq!(a, b, "same effective values\n{first}\n---\n{second}");
    assert_eq!(b["port"].as_integer(), Some(9123));
    assert_eq!(b["drain-window"].as_float(), Some(1.5));
    assert_eq!(b["channels"][0]["name"].as_str(), Some("ChatChannel"));
    // Every value of the second run came from the file.
    for l in second
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
    {
        if l.contains("  # ") {
            assert!(l.contains(&format!("# file {again}")), "{l}");
        }
    }
}

#[test]
fn print_config_redacts_secrets() {
    let (_dir, file) = config_file(
        "jwt-secret = \"jwt-SECRET-in-file\"\nold-secret-key-bases = [\"OLD-SECRET-1\"]\n",
    );
    let out = print_config(
        &[
            "--config",
            &file,
            "--redis-url",
            "redis://:REDIS-PASSWORD@127.0.0.1:6390/0",
            "--database-url",
            "postgres://app:DB-PASSWORD@db.test/app",
        ],
        &[
            ("SECRET_KEY_BASE", "SECRET-KEY-BASE-VALUE"),
            ("FERROCABLE_TURBO_VERIFIER_KEY", "TURBO-KEY-VALUE"),
        ],
    );
    for secret in [
        "jwt-SECRET-in-file",
        "OLD-SECRET-1",
        "REDIS-PASSWORD",
        "DB-PASSWORD",
        "SECRET-KEY-BASE-VALUE",
        "TURBO-KEY-VALUE",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(
        out.contains("# secret-key-base = \"<redacted>\"  # env SECRET_KEY_BASE (redacted)"),
        "{out}"
    );
    assert!(
        out.contains("# redis-url = \"redis://:<redacted>@127.0.0.1:6390/0\"  # flag --redis-url"),
        "{out}"
    );
    assert!(
        out.contains("postgres://app:<redacted>@db.test/app"),
        "{out}"
    );
    // Still TOML; the redacted lines are comments, so no secret is set from it.
    let t = parse(&out);
    assert!(!t.contains_key("secret-key-base") && !t.contains_key("redis-url"));
}

#[test]
fn a_bad_config_file_is_refused_naming_the_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "typo.toml", "max_conections = 5\n");
    let out = run(&["--config", &file], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&file) && err.contains("unknown key `max_conections`"),
        "{err}"
    );
    let file = write(dir.path(), "type.toml", "port = \"high\"\n");
    let out = run(&["--config", &file, "--print-config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file) && err.contains("`port`"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing printed for an unreadable file"
    );
    let out = run(
        &[
            "--config",
            &dir.path().join("missing.toml").display().to_string(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn print_config_reports_the_connection_limits_a_start_refuses() {
    // These were checked only when the server started, after Redis had connected.
    for (flag, value) in [("--max-header-bytes", "100"), ("--auth-timeout", "0")] {
        for print in [true, false] {
            let mut args = vec![flag, value];
            if print {
                args.push("--print-config");
            }
            let out = run(&args, &[]);
            assert_eq!(out.status.code(), Some(1), "{flag} print={print}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(flag), "{err}");
        }
    }
}

#[tokio::test]
async fn values_from_the_file_take_effect() {
    let (dir, file) = config_file(&format!(
            "port = 0\npath = \"/ws\"\nmax-connections = 1\ndev_user_param = \"user_id\"\n{CHANNELS_TOML}"
        ));
    let server = TestServer::start_with_args(dir, vec!["--config".into(), file]);
    let url = format!("ws://{}/ws?user_id=1", server.addr);
    let mut c = CableClient::connect(&url).await;
    c.expect_json(r#"{"type":"welcome"}"#).await;
    // The ChatChannel declared inline in the file.
    let chat = r#"{"channel":"ChatChannel","room":"x"}"#;
    c.subscribe(chat).await;
    assert_eq!(c.drain().await, vec![confirm(chat)]);
    // max-connections = 1: a second upgrade is refused with 503.
    let origin = format!("http://{}", server.addr);
    let second = CableClient::connect_with(&url, &[("Origin", &origin)]).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("second connection not refused: {:?}", other.map(|_| ())),
    }
}

const CABLE_YML: &str = r#"
default: &default
  adapter: redis
  url: <%= ENV.fetch("FERROCABLE_TEST_CABLE_REDIS") { "redis://127.0.0.1:1/0" } %>
  channel_prefix: <%= ENV['FERROCABLE_TEST_UNSET_PREFIX'] || 'fromerb' %>

development:
  adapter: async

production:
  <<: *default
"#;

#[tokio::test]
async fn rails_root_redis_adapter_with_erb_and_anchors_runs_in_redis_mode() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("app");
    write(&root, "config/cable.yml", CABLE_YML);
    let channels = write(dir.path(), "channels.toml", CHANNELS_TOML);
    let root = root.display().to_string();
    let url = redis.url();
    let vars = [
        ("RAILS_ENV", "production"),
        ("FERROCABLE_TEST_CABLE_REDIS", url.as_str()),
    ];
    let out = print_config(&["--rails-root", &root], &vars);
    assert!(
        line(&out, "redis-url")
            .contains(&format!("rails-root {root}/config/cable.yml (production)")),
        "{out}"
    );
    assert_eq!(parse(&out)["channel-prefix"].as_str(), Some("fromerb"));

    let args = [
        "--rails-root",
        &root,
        "--port",
        "0",
        "--dev-user-param",
        "user_id",
        "--channels-file",
        &channels,
    ];
    let server = TestServer::start_with_env(dir, args.map(String::from).to_vec(), &vars);
    assert!(server
        .http_get("/health")
        .await
        .contains(r#""mode":"redis""#));
    let mut c = CableClient::welcomed(&server, 1).await;
    let chat = r#"{"channel":"ChatChannel","room":"r"}"#;
    c.subscribe(chat).await;
    assert_eq!(c.drain().await, vec![confirm(chat)]);
    // Subscribed under the prefix the ERB chose, on the Redis the ERB named.
    redis.wait_numsub("fromerb:chat_r", 1).await;
    assert_eq!(redis.publish("fromerb:chat_r", r#"{"text":"hi"}"#), 1);
    c.expect_json(&support::redis::message_frame(chat, r#"{"text":"hi"}"#))
        .await;
}

#[tokio::test]
async fn rails_root_async_adapter_is_embedded_with_the_development_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("app");
    write(&root, "config/cable.yml", CABLE_YML);
    write(&root, "tmp/local_secret.txt", "DEV-SECRET-FROM-RAILS\n");
    let root = root.display().to_string();
    // No RAILS_ENV: development, the async adapter.
    let out = print_config(&["--rails-root", &root], &[]);
    assert!(out.contains("# redis-url: not set"), "{out}");
    assert!(!out.contains("DEV-SECRET-FROM-RAILS"), "{out}");
    assert!(
        out.contains(&format!(
            "# secret-key-base = \"<redacted>\"  # rails-root {root}/tmp/local_secret.txt"
        )),
        "{out}"
    );
    let args = [
        "--rails-root",
        &root,
        "--port",
        "0",
        "--dev-user-param",
        "user_id",
    ];
    let server = TestServer::start_with_args(dir, args.map(String::from).to_vec());
    let health = server.http_get("/health").await;
    assert!(health.contains(r#""mode":"embedded""#), "{health}");
}

#[test]
fn rails_root_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yml =
        "production:\n  adapter: redis\n  url: <%= Rails.application.credentials.redis_url %>\n";
    let file = write(dir.path(), "config/cable.yml", yml);
    let root = dir.path().display().to_string();
    let out = run(&["--rails-root", &root], &[("RAILS_ENV", "production")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{file}:3: unsupported ERB")), "{err}");
    write(
        dir.path(),
        "config/cable.yml",
        "production:\n  adapter: postgresql\n",
    );
    let out = run(&["--rails-root", &root, "--rails-env", "production"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("adapter `postgresql` is not supported"),
        "{err}"
    );
}

/// Every flag `--help` lists is in the README's tables, with its environment variable.
#[test]
fn the_readme_documents_every_flag() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut flags = 0;
    // Each option starts a line: `      --name <VALUE>` (or `  -h, --help`); its
    // description follows until the next option, with `[env: NAME=]` in it.
    let mut current: Option<(String, String)> = None;
    let mut options = Vec::new();
    for l in help.lines() {
        let t = l.trim_start();
        let t = t
            .strip_prefix("-h, ")
            .or(t.strip_prefix("-V, "))
            .unwrap_or(t);
        if let Some(rest) = t.strip_prefix("--") {
            options.extend(current.take());
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            current = Some((name, String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push(' ');
            text.push_str(l.trim());
        }
    }
    options.extend(current);
    for (name, text) in options {
        if name == "help" || name == "version" {
            continue;
        }
        flags += 1;
        let row = readme
            .lines()
            .find(|r| r.starts_with(&format!("| `--{name}` |")))
            .unwrap_or_else(|| panic!("README.md has no table row for --{name}"));
        if let Some(env) = text.split("[env: ").nth(1).map(|e| {
            e.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        }) {
            assert!(
                row.contains(&format!("`{env}`")),
                "README row of --{name} lacks its variable {env}: {row}"
            );
        }
    }
    assert!(flags > 50, "only {flags} flags found in --help:\n{help}");
}

/// `examples/ferrocable.toml` is accepted as is and names every option.
#[test]
fn the_example_config_is_valid_and_names_every_option() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ferrocable.toml");
    let text = std::fs::read_to_string(example).expect("example");
    let out = print_config(&["--config", example], &[]);
    assert_eq!(
        parse(&out)["channels"][0]["name"].as_str(),
        Some("ChatChannel")
    );
    let mut options = 0;
    for l in out.lines() {
        if l.starts_with("# channels declared") {
            break;
        }
        let l = l.trim_start_matches("# ");
        let key: String = l
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        let rest = &l[key.len()..];
        if key.is_empty() || !(rest.starts_with(" = ") || rest.starts_with(": not set")) {
            continue;
        }
        options += 1;
        assert!(
            text.contains(&format!("{key} = ")),
            "examples/ferrocable.toml does not mention {key}"
        );
    }
    assert!(options > 45, "{options} options in\n{out}");
}
