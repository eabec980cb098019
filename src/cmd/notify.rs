//! `rtctl notify` and `rtctl event`: publish through the hub's HTTP API with the API key, as a backend
//! would: notifications (`POST /api/v1/notifications`), pending users and order updates for the admin
//! dashboard, and organization events (`POST /api/v1/orgs/{org}/events`).

use std::path::Path;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{self, Auth};
use crate::cli::notify::{EventArgs, NotifyArgs, NotifyCommand, OrderArgs, PendingUserArgs, UserNotification};
use crate::config::{ClientConfig, Credential};

pub async fn run(config_path: &Path, args: NotifyArgs) -> anyhow::Result<u8> {
    let config = args.client.resolve(config_path)?;
    match args.command {
        None => notify_users(&config, args.user).await,
        Some(NotifyCommand::User(user)) => notify_users(&config, user).await,
        Some(NotifyCommand::PendingUser(pending)) => pending_user(&config, pending).await,
        Some(NotifyCommand::Order(order)) => order_update(&config, order).await,
    }
}

async fn notify_users(config: &ClientConfig, args: UserNotification) -> anyhow::Result<u8> {
    let key = config.require_api_key()?.expose();
    let client = http::client(config)?;
    let title = args.title.context("--title is required")?;
    let message = args.message.context("--message is required")?;
    let titles: Vec<String> = match args.count {
        None => vec![title],
        Some(n) => (1..=n).map(|i| format!("{title} {i}")).collect(),
    };
    let mut created = Vec::new();
    for title in titles {
        let mut body = Map::new();
        match args.user_ids.as_slice() {
            [one] => body.insert("user_id".into(), json!(one)),
            many => body.insert("user_ids".into(), json!(many)),
        };
        body.insert("title".into(), json!(title));
        body.insert("message".into(), json!(message));
        insert_some(&mut body, "type", args.kind.clone().map(Value::from));
        insert_some(&mut body, "data", args.data.clone());
        insert_some(&mut body, "link", args.link.clone().map(Value::from));
        let request =
            http::request(&client, Method::POST, &config.url, "/api/v1/notifications", Auth::ApiKey(key)).json(&body);
        let reply = http::send_as(request, config, Credential::ApiKey).await.context("cannot send the notification")?;
        let notifications = reply["notifications"].as_array().cloned().unwrap_or_default();
        if !args.json {
            for n in &notifications {
                println!("created notification {} for user {}", n["id"], plain(&n["user_id"]));
            }
        }
        created.extend(notifications);
    }
    if args.json {
        println!("{}", json!({"notifications": created}));
    }
    Ok(0)
}

async fn pending_user(config: &ClientConfig, args: PendingUserArgs) -> anyhow::Result<u8> {
    let key = config.require_api_key()?.expose();
    let mut body = Map::new();
    body.insert("user_id".into(), json!(args.user_id));
    insert_some(&mut body, "email", args.email.map(Value::from));
    insert_some(&mut body, "name", args.name.map(Value::from));
    let client = http::client(config)?;
    let path = "/api/v1/admin-dashboard/users/";
    let request = http::request(&client, Method::POST, &config.url, path, Auth::ApiKey(key)).json(&body);
    let reply = http::send_as(request, config, Credential::ApiKey).await.context("cannot register the pending user")?;
    if args.json {
        println!("{reply}");
    } else {
        println!("registered pending user {}", args.user_id);
    }
    Ok(0)
}

async fn order_update(config: &ClientConfig, args: OrderArgs) -> anyhow::Result<u8> {
    let key = config.require_api_key()?.expose();
    let mut body = Map::new();
    body.insert("status".into(), json!(args.status));
    insert_some(&mut body, "data", args.data);
    let client = http::client(config)?;
    let path = format!("/api/v1/admin-dashboard/orders/{}/", path_segment(&args.order_id));
    let request = http::request(&client, Method::POST, &config.url, &path, Auth::ApiKey(key)).json(&body);
    let reply = http::send_as(request, config, Credential::ApiKey).await.context("cannot send the order update")?;
    if args.json {
        println!("{reply}");
    } else {
        println!("order {} is now {}: sent to the admins", args.order_id, args.status);
    }
    Ok(0)
}

pub async fn run_event(config_path: &Path, args: EventArgs) -> anyhow::Result<u8> {
    let config = args.client.resolve(config_path)?;
    let key = config.require_api_key()?.expose();
    let mut body = Map::new();
    body.insert("event_type".into(), json!(args.event_type));
    insert_some(&mut body, "data", args.data);
    let client = http::client(&config)?;
    // clap requires one of the two.
    let org = args.org.or(args.org_flag).unwrap_or_default();
    let path = format!("/api/v1/orgs/{}/events", path_segment(&org));
    let request = http::request(&client, Method::POST, &config.url, &path, Auth::ApiKey(key)).json(&body);
    let reply = http::send_as(request, &config, Credential::ApiKey).await.context("cannot publish the event")?;
    if args.json {
        println!("{reply}");
    } else {
        println!("published {} to org {} at {}", args.event_type, org, plain(&reply["timestamp"]));
    }
    Ok(0)
}

fn insert_some(body: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        body.insert(key.to_owned(), value);
    }
}

/// A string value without its quotes, anything else as JSON.
fn plain(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// Percent-encodes an id for a URL path; the hub's ids are `[A-Za-z0-9_.-]`, so this only matters for
/// a mistyped one, which then gets the hub's own 400 instead of reaching another route.
pub(crate) fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
