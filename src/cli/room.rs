//! `rtctl room`'s flags: create a chat room, list a user's rooms, post a message.

use clap::{Args, Subcommand};

use super::ClientArgs;
use super::token::MintArgs;

#[derive(Debug, Args)]
pub struct RoomArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    #[command(subcommand)]
    pub command: RoomCommand,
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room with its members (POST /api/v1/chat/rooms, with the API key)
    Create(CreateRoomArgs),
    /// List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)
    List(ListRoomsArgs),
    /// Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)
    Post(PostArgs),
}

#[derive(Debug, Args)]
pub struct CreateRoomArgs {
    /// The room's id ([A-Za-z0-9_.-], at most 64) [default: the hub picks one]
    #[arg(value_name = "ROOM")]
    pub room_id: Option<String>,

    /// A member's user id; repeat for several
    #[arg(long = "member", value_name = "ID", required = true)]
    pub members: Vec<String>,

    /// The room's display name [default: its id]
    #[arg(long)]
    pub name: Option<String>,

    /// Print the hub's reply as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListRoomsArgs {
    #[command(flatten)]
    pub mint: MintArgs,

    /// Print the hub's reply as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PostArgs {
    /// The room to post to
    #[arg(value_name = "ROOM")]
    pub room_id: String,

    /// The message's text
    #[arg(value_name = "MESSAGE")]
    pub message: String,

    #[command(flatten)]
    pub mint: MintArgs,

    /// Print the hub's reply as JSON
    #[arg(long)]
    pub json: bool,
}
