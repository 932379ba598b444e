//! Tails one Action Cable subscription and prints every frame it receives.
//!
//! ```sh
//! cargo run --example tail -- 'ws://127.0.0.1:8080/cable?user_id=1' '{"channel":"PresenceChannel","room_id":1}'
//! ```
//!
//! It sends the browser's subprotocols and an `Origin` equal to the host, as a page
//! served from the same host would, and prints frames until the server closes.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(identifier)) = (args.next(), args.next()) else {
        eprintln!("usage: tail <ws-url> <identifier-json>");
        std::process::exit(2);
    };
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("localhost")
        .to_owned();
    let mut req = url.as_str().into_client_request()?;
    req.headers_mut()
        .insert("Origin", HeaderValue::from_str(&format!("http://{host}"))?);
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("actioncable-v1-json, actioncable-unsupported"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let subscribe =
        serde_json::json!({"command": "subscribe", "identifier": identifier}).to_string();
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                println!("{t}");
                if t.as_str() == r#"{"type":"welcome"}"# {
                    ws.send(Message::Text(subscribe.clone())).await?;
                }
            }
            Message::Close(f) => {
                println!("closed: {f:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
