//! ferrocable: a standalone, protocol-exact Action Cable server for Rails apps.
//!
//! A tour of the modules, from the wire inwards:
//! - [`server`] accepts sockets, answers HTTP (`/health`, the upgrade, 404), checks the
//!   Origin, and runs one reader and one writer task per WebSocket; its composition
//!   root ([`server::App::from_config`]) builds every component from its settings.
//! - [`protocol`] is the Action Cable wire format: decoding client commands, encoding
//!   server frames byte for byte as Rails does.
//! - [`auth`] decides who a connection belongs to (a pipeline of identification steps
//!   and a profile source).
//! - [`channels`] gives subscriptions their meaning: `PresenceChannel`, declared stream
//!   channels, the subscribe/perform/unsubscribe flow.
//! - [`presence`] stores room membership (per subscription, so tabs and nodes count).
//! - [`hub`] indexes streams to local connections and fans broadcasts out, encoding
//!   once per identifier.
//! - [`broker`] moves broadcasts between nodes (in memory for a single node, Redis
//!   pub/sub for a fleet, speaking Rails' own channel names).
//! - [`redis`] builds the Redis connections the broker and the presence store use.
//! - [`config`] and [`metrics`] are what an operator touches: `config` reads every
//!   source and checks it once into each component's typed settings.
//!
//! See ARCHITECTURE.md for the invariants each module keeps.

pub mod auth;
pub mod broker;
pub mod channels;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod redis;
pub mod server;
