//! `rtctl room`: chat rooms through the HTTP API: `create` with the API key as a backend would, `list`
//! and `post` as a user with a JWT minted from the config.

use std::path::Path;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::http::{self, Auth};
use crate::cli::room::{CreateRoomArgs, ListRoomsArgs, PostArgs, RoomArgs, RoomCommand};
use crate::cli::token::MintArgs;
use crate::config::{ClientConfig, Credential};

pub async fn run(config_path: &Path, args: RoomArgs) -> anyhow::Result<u8> {
    let config = args.client.resolve(config_path)?;
    match args.command {
        RoomCommand::Create(create) => create_room(&config, create).await,
        RoomCommand::List(list) => list_rooms(&config, list).await,
        RoomCommand::Post(post) => post_message(&config, post).await,
    }
}

async fn create_room(config: &ClientConfig, args: CreateRoomArgs) -> anyhow::Result<u8> {
    let key = config.require_api_key()?.expose();
    let mut body = Map::new();
    if let Some(room_id) = &args.room_id {
        body.insert("room_id".into(), json!(room_id));
    }
    if let Some(name) = &args.name {
        body.insert("name".into(), json!(name));
    }
    body.insert("members".into(), json!(args.members));
    let client = http::client(config)?;
    let request =
        http::request(&client, Method::POST, &config.url, "/api/v1/chat/rooms", Auth::ApiKey(key)).json(&body);
    let room = http::send_as(request, config, Credential::ApiKey).await.context("cannot create the room")?;
    if args.json {
        println!("{room}");
    } else {
        println!("created room {} with members {}", text(&room["room_id"]), members(&room));
    }
    Ok(0)
}

async fn list_rooms(config: &ClientConfig, args: ListRoomsArgs) -> anyhow::Result<u8> {
    let jwt = mint(config, &args.mint)?;
    let client = http::client(config)?;
    // The list comes in pages (protocol 1.1): follow the cursors to show every room.
    let mut rooms = Vec::new();
    let mut path = "/api/v1/chat/rooms?limit=200".to_owned();
    loop {
        let request = http::request(&client, Method::GET, &config.url, &path, Auth::Bearer(&jwt));
        let reply = http::send_as(request, config, Credential::JwtSecret).await.context("cannot list the rooms")?;
        rooms.extend(reply["rooms"].as_array().cloned().unwrap_or_default());
        match reply["next_cursor"].as_str() {
            // A cursor is a timestamp and a room id: only `|` and `:` need escaping in a query.
            Some(cursor) => {
                path = format!("/api/v1/chat/rooms?limit=200&cursor={}", cursor.replace('|', "%7C").replace(':', "%3A"))
            }
            None => break,
        }
    }
    if args.json {
        println!("{}", json!({"rooms": rooms}));
        return Ok(0);
    }
    if rooms.is_empty() {
        println!("no rooms");
    }
    for room in &rooms {
        let last = room["last_message"]["content"].as_str().map(|c| format!("  last: {c}")).unwrap_or_default();
        println!(
            "{}  {}  members {}  unread {}{last}",
            text(&room["room_id"]),
            text(&room["name"]),
            members(room),
            room["unread_count"]
        );
    }
    Ok(0)
}

async fn post_message(config: &ClientConfig, args: PostArgs) -> anyhow::Result<u8> {
    let jwt = mint(config, &args.mint)?;
    let client = http::client(config)?;
    let path = format!("/api/v1/chat/rooms/{}/messages", super::notify::path_segment(&args.room_id));
    let body = json!({"message": args.message});
    let request = http::request(&client, Method::POST, &config.url, &path, Auth::Bearer(&jwt)).json(&body);
    let message = http::send_as(request, config, Credential::JwtSecret).await.context("cannot post the message")?;
    if args.json {
        println!("{message}");
    } else {
        println!("posted message {} to room {}", message["id"], args.room_id);
    }
    Ok(0)
}

/// A JWT for the user the flags name (required: the hub answers as that user).
fn mint(config: &ClientConfig, args: &MintArgs) -> anyhow::Result<String> {
    Ok(args.mint(&args.identity(&[], false)?, config)?.0)
}

fn members(room: &Value) -> String {
    room["members"].as_array().map(|m| m.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}
