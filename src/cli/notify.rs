//! `rtctl notify` and `rtctl event`'s flags.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::ClientArgs;

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

    /// The organization whose members get the event, as in `rtctl connect events ORG`
    #[arg(value_name = "ORG", required_unless_present = "org_flag", conflicts_with = "org_flag")]
    pub org: Option<String>,

    /// The organization, as a flag (the same as ORG)
    #[arg(long = "org", value_name = "ORG")]
    pub org_flag: Option<String>,

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
