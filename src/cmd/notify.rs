//! `rtctl notify` and `rtctl event`: publish through the hub's HTTP API with the API key, as a backend
//! would: notifications (`POST /api/v1/notifications`), pending users and order updates for the admin
//! dashboard, and organization events (`POST /api/v1/orgs/{org}/events`).

use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{self, Auth};
use crate::cli::ClientArgs;
use crate::config::ClientConfig;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    #[command(subcommand)]
    pub command: Option<NotifyCommand>,

    #[command(flatten)]
    pub user: UserNotification,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Store and push a notification to users (the default: `rtctl notify --user-id ...`)
    User(UserNotification),
    /// Register a user awaiting approval; admins on the dashboard get `new_user`
    PendingUser(PendingUserArgs),
    /// Push an order status change to the admins on the dashboard
    Order(OrderArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UserNotification {
    /// Recipient user id; repeat for several (one request, the same notification for each)
    #[arg(long = "user-id", value_name = "ID", required = true)]
    pub user_ids: Vec<String>,

    /// The notification's title
    #[arg(long, required = true)]
    pub title: Option<String>,

    /// The notification's text
    #[arg(long, required = true)]
    pub message: Option<String>,

    /// The notification type [hub default: general]
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,

    /// Extra data, a JSON object
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub data: Option<Value>,

    /// A link the client may open
    #[arg(long, value_name = "URL")]
    pub link: Option<String>,

    /// Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,

    /// Print the hub's replies as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PendingUserArgs {
    /// The user awaiting approval
    #[arg(long, value_name = "ID")]
    pub user_id: String,

    /// The user's email
    #[arg(long)]
    pub email: Option<String>,

    /// The user's display name
    #[arg(long)]
    pub name: Option<String>,

    /// Print the hub's reply as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OrderArgs {
    /// The order whose status changed
    #[arg(long, value_name = "ID")]
    pub order_id: String,

    /// Its new status, e.g. paid, shipped
    #[arg(long)]
    pub status: String,

    /// Extra data, JSON
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub data: Option<Value>,

    /// Print the hub's reply as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The organization whose members get the event
    #[arg(long, value_name = "ORG")]
    pub org: String,

    /// The event type, free text such as user.joined or resource.created
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,

    /// The event's data, JSON
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub data: Option<Value>,

    /// Print the hub's reply as JSON
    #[arg(long)]
    pub json: bool,
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

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
    let client = http::client()?;
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
        let reply = http::send(request).await.context("cannot send the notification")?;
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
    let client = http::client()?;
    let path = "/api/v1/admin-dashboard/users/";
    let request = http::request(&client, Method::POST, &config.url, path, Auth::ApiKey(key)).json(&body);
    let reply = http::send(request).await.context("cannot register the pending user")?;
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
    let client = http::client()?;
    let path = format!("/api/v1/admin-dashboard/orders/{}/", path_segment(&args.order_id));
    let request = http::request(&client, Method::POST, &config.url, &path, Auth::ApiKey(key)).json(&body);
    let reply = http::send(request).await.context("cannot send the order update")?;
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
    let client = http::client()?;
    let path = format!("/api/v1/orgs/{}/events", path_segment(&args.org));
    let request = http::request(&client, Method::POST, &config.url, &path, Auth::ApiKey(key)).json(&body);
    let reply = http::send(request).await.context("cannot publish the event")?;
    if args.json {
        println!("{reply}");
    } else {
        println!("published {} to org {} at {}", args.event_type, args.org, plain(&reply["timestamp"]));
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
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
