//! The examples at the end of each command's `--help` (websocat's help is the model: the commands a
//! reader copies, each with a line on what it does), and `connect`'s slash commands and exit codes.

pub const SERVE: &str = "\
Examples:
  rtctl serve
      the hub on 127.0.0.1:8000; the first start here creates ./rtctl.toml with its secrets
  rtctl serve --bind 8011
      on 127.0.0.1:8011; rtctl.listen tells the other commands run here where it listens
  rtctl serve --bind 0.0.0.0:8000 --allowed-origins https://app.example.com
      for other machines, and for browsers from that origin
  rtctl serve --redis-url redis://127.0.0.1:6379 --database-url postgres://rtctl@db/rtctl
      one node of several (every node with the same rtctl.toml)";

pub const TOKEN: &str = "\
Examples:
  rtctl token jwt --user-id 7 --org acme --ttl 15m
      a JWT for user 7, member of acme, signed with jwt_secret from rtctl.toml
  rtctl token ws --user-id 7
      exchange it for a single-use ws token, as a browser would
  rtctl token inspect \"$TOKEN\"
      its claims, whether it verifies, and when it expires";

pub const CONNECT: &str = "\
Examples:
  rtctl connect --user-id 7
      an interactive session on /ws/notifications/ as user 7 (Tab completes, /help lists the commands)
  rtctl connect events acme --user-id 7
  rtctl connect chat team --user-id 7
      plain text typed in a room is sent as a chat message
  rtctl connect dashboard --user-id 1 --staff --until new_user
      end when that message type arrives (exit 0)
  rtctl connect --user-id 7 -x 'get_notifications limit=5' --wait 2s
      send a message, print the frames for two seconds as JSON lines
  echo '{\"type\":\"ping\"}' | rtctl connect --user-id 7
      piped lines are sent one by one; the end of input closes the session
  rtctl connect ws://127.0.0.1:8000/ws/notifications/ --token \"$TOKEN\"
      any ws:// URL, with a token given (or --user-id to mint one)

Typed in a session:
  {\"type\":\"ping\"}      a JSON message
  ping timestamp=1       the same as TYPE key=value
  x reason=\"spam account\" a quoted value keeps its spaces ('single quotes' too)
  hello there            in a chat room: said as a chat_message
  /ping                  send a protocol ping and show the round trip
  /close [CODE] [REASON] close the connection (default 1000) and end the session
  /reconnect             close and connect again (with a fresh token when rtctl minted it)
  /json on|off           pretty-print incoming JSON, or show frames as they came
  /raw TEXT              send TEXT as it is, even when it is not JSON
  /history               show the input history of this target
  /help                  show the commands
  /quit                  close normally and end the session (also Ctrl-D)
  Ctrl-C discards the line being typed; on an empty line it ends the session

Exit codes:
  0    normal close: 1000, /quit, Ctrl-D, Ctrl-C on an empty line, --wait elapsed, --until seen, end of input
  1    an error: the hub unreachable at the first attempt, close 1003/1007/1009, a piped line not sent
  2    usage: bad arguments, unknown target, an --until type the hub never sends, a bad -x or -H
  3    refused: the handshake answered with an HTTP status, or close 4001, 4003 or 4004
  4    the connection was lost with --no-reconnect, or not back when the session ended
  130  Ctrl-C before what --wait or --until waited for";

pub const NOTIFY: &str = "\
Examples:
  rtctl notify --user-id 7 --title Hello --message 'Welcome aboard'
      store a notification for user 7 and push it to their connections
  rtctl notify --user-id 7 --user-id 8 --title Hi --message x --type alert --data '{\"id\":1}'
  rtctl notify pending-user --user-id 44 --email ada@example.com
      admins on the dashboard get new_user
  rtctl notify order --order-id o-1 --status paid";

pub const EVENT: &str = "\
Examples:
  rtctl event acme --type resource.created --data '{\"id\":1}'
      every connection on /ws/events/acme/ gets it (rtctl connect events acme); --org acme works too";

pub const ROOM: &str = "\
Examples:
  rtctl room create team --member 7 --member 8 --name 'Team chat'
  rtctl room list --user-id 7
  rtctl room post team --user-id 7 'hello there'
  rtctl connect chat team --user-id 8";

pub const STATUS: &str = "\
Examples:
  rtctl status
      health, readiness and figures of the hub this directory's rtctl.toml belongs to
  rtctl status --watch
      redraw every second until Ctrl-C
  rtctl status --json --url http://127.0.0.1:8011

Exit codes: 0 ready and read; 1 not ready, unreachable, or the stats refused; 2 usage";

pub const CONSOLE: &str = "\
Examples:
  rtctl console --open
      open the web console in a browser, signed in as staff for a short while
  rtctl console --user-id 7
      a link signed in as user 7";

pub const BENCH: &str = "\
Examples:
  rtctl bench fanout --url http://127.0.0.1:8000 -n 1000 -r 50 -d 10s
      1,000 subscribers, 50 messages/s for 10 s: delivery latency percentiles
  rtctl bench fanout -n 1000 -r 50 -t 'p99<20ms' -t loss=0 --report run.html
      fail (exit 3) unless the thresholds hold; write an HTML report
  rtctl bench chat --room-size 10 --spawn
      chat rooms against a throwaway hub the bench starts itself
  rtctl bench fanout --spawn --churn 5%/s --restart-hub-at 5s -t loss=0
      subscribers drop and resume, the hub is killed and restarted: nothing lost";

pub const CONFIG: &str = "\
Examples:
  rtctl config check
      the settings rtctl serve would run with here (rtctl.toml, RTCTL_*), secrets masked
  rtctl config check --config /etc/rtctl/rtctl.toml --bind 0.0.0.0:8000
      the same flags as serve: check a deployment's settings before starting it";

/// `rtctl bench SCENARIO --help`: what the scenario measures, and its examples.
pub fn bench_scenario(scenario: &str) -> Option<(&'static str, &'static str)> {
    Some(match scenario {
        "fanout" => (
            "Fan-out: N subscribers on /ws/events/bench/; each message POSTed to /api/v1/orgs/bench/events \
             reaches every subscriber",
            "\
Examples:
  rtctl bench fanout --url http://127.0.0.1:8000 -n 1000 -r 50 -d 10s
      1,000 subscribers, 50 messages/s for 10 s: delivery latency percentiles
  rtctl bench fanout --spawn -n 1000 --find-max
      a throwaway hub; raise the rate until p99 passes 1 s or a message is lost
  rtctl bench fanout -n 100 -r 20 -t 'p99<20ms' -t loss=0 --report run.html
      fail (exit 3) unless the thresholds hold; write an HTML report",
        ),
        "notify" => (
            "Notifications: N users on /ws/notifications/; POST /api/v1/notifications to each user in \
             turn (stored, then pushed)",
            "\
Examples:
  rtctl bench notify -n 500 -r 100 -d 10s
      500 users, 100 notifications/s over all of them
  rtctl bench notify --spawn --spawn-database-url postgres://rtctl@db/bench -n 200
      a throwaway hub storing in PostgreSQL",
        ),
        "chat" => (
            "Chat: rooms of --room-size members on /ws/chat/{room}/; members take turns sending \
             chat_message, echoed to every member of the room",
            "\
Examples:
  rtctl bench chat --room-size 10 -n 1000 -r 100
      100 rooms of 10; 100 messages/s over all rooms
  rtctl bench chat --spawn --room-size 2 -n 200 -t 'p99<50ms'",
        ),
        "idle" => (
            "Idle: N connections held open for --duration, nothing published: the hub's memory per \
             connection",
            "\
Examples:
  rtctl bench idle -n 10000 -d 30s --hub-pid $(pgrep -f 'rtctl serve')
      memory and CPU of 10,000 idle connections
  rtctl bench idle --spawn -n 5000 -t 'memory_per_connection<64KiB'",
        ),
        _ => return None,
    })
}

/// Flags of `rtctl bench` that a scenario does not use, left out of its help.
pub fn bench_scenario_unused(scenario: &str) -> &'static [&'static str] {
    match scenario {
        "fanout" => &["room_size"],
        "notify" => &["room_size", "churn", "restart_hub_at"],
        "chat" => &["max_inflight", "churn", "restart_hub_at"],
        "idle" => &[
            "room_size",
            "rate",
            "messages",
            "warmup",
            "payload_size",
            "max_inflight",
            "drain",
            "find_max",
            "find_max_factor",
            "find_max_steps",
            "churn",
            "restart_hub_at",
        ],
        _ => &[],
    }
}

pub const COPY_STORE: &str = "\
Examples:
  rtctl copy-store --to postgres://rtctl@db/rtctl
      copy the SQLite store of rtctl.toml's database_url into an empty PostgreSQL database";

pub const COMPLETIONS: &str = "\
Examples:
  rtctl completions bash > ~/.local/share/bash-completion/completions/rtctl
  rtctl completions zsh > ~/.zfunc/_rtctl
  rtctl completions fish > ~/.config/fish/completions/rtctl.fish";

#[cfg(test)]
mod tests {
    /// `connect --help` lists every slash command a session knows.
    #[test]
    fn connect_help_lists_every_slash_command() {
        for (command, _) in crate::cmd::connect::input::SLASH_COMMANDS {
            assert!(super::CONNECT.contains(&format!("\n  {command} ")), "{command} is missing");
        }
    }
}
