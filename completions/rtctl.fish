# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rtctl_global_optspecs
    string join \n config= v/verbose h/help V/version
end

function __fish_rtctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rtctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rtctl_using_subcommand
    set -l cmd (__fish_rtctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rtctl -n "__fish_rtctl_needs_command" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_needs_command" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_needs_command" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_needs_command" -s V -l version -d 'Print version'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "serve" -d 'Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "bench" -d 'Load-test fan-out latency of a hub (any hub that speaks the protocol)'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "token" -d 'Mint a JWT, exchange it for a ws token, or inspect and verify a token'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "connect" -d 'Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "notify" -d 'Publish notifications (or, with a subcommand, pending users and order updates) through the API'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "event" -d 'Publish an organization event through the API'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "room" -d 'Chat rooms through the API: create one with its members, list a user\'s, post a message'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "status" -d 'Show a hub\'s health, readiness and figures'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "console" -d 'Print (or --open) a link that signs in to the hub\'s web console with a short-lived token'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "copy-store" -d 'Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "config" -d 'Check the hub\'s configuration: `rtctl config check [SERVE FLAGS]`'
complete -c rtctl -n "__fish_rtctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l bind -d 'Address to listen on [default: 127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l jwt-secret -d 'HS256 secret that JWTs are signed with (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l jwt-public-key -d 'PEM public key to verify RS256/ES256 JWTs with, instead of the secret' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l jwks -d 'JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL (an identity provider\'s certs endpoint) fetched at start and kept fresh' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l jwks-refresh -d 'With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once, at most every 10s) [default: 5m]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l claim-user-id -d 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l claim-staff -d 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l claim-orgs -d 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l claim-name -d 'Claim holding the display name [default: name]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l claim-email -d 'Claim holding the email [default: email]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l jwt-issuer -d 'Required `iss` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l jwt-audience -d 'Required `aud` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l api-key -d 'Key that backends send in X-API-Key (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l allowed-origins -d 'Browser origins allowed to connect: a comma list or `*` [default: same host only]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l database-url -d 'Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several machines [default: sqlite://rtctl-data/rtctl.db]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l database-pool -d 'Most connections this node opens to the database (PostgreSQL\'s are shared by every node) [default: 8 for SQLite, 16 for PostgreSQL]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l sqlite-synchronous -d 'SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose the last commits) [default: full]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l notification-retention -d 'Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever [default: off]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l redis-url -d 'Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every hub node on it [default: none, one node in memory]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l redis-prefix -d 'Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l redis-frame-key -d 'Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every node, at least 16 characters [default: from the config file, else derived from the API key]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l node-ttl -d 'With Redis: how long a node that died without closing its sockets still counts in presence (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l max-frame -d 'Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l queue -d 'Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l heartbeat-interval -d 'Interval between server WebSocket pings [default: 20s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l heartbeat-timeout -d 'Silence after which a connection is closed with 4000 [default: 60s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l send-timeout -d 'Longest a client\'s socket may refuse queued frames before it is closed with 4008 [default: 10s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l ws-token-ttl -d 'Lifetime of a ws token from /api/user/ws-token/ [default: 30m]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l shutdown-timeout -d 'Longest a shutdown waits for sockets and requests [default: 10s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l message-rate -d 'WebSocket frames (and JWT requests) a user may send per second across their connections; above it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429; 0 turns the limits off [default: 50]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l message-burst -d 'Frames (requests) that may come at once before --message-rate applies [default: 200]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l max-connections -d 'WebSocket connections this node serves at once; more are accepted and closed with 1013 [default: what the open-file limit allows, less 64 descriptors kept for HTTP]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l max-connections-per-user -d 'WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l max-unauthenticated-per-ip -d 'Connections from one client address that may wait for their first request at once; more get 429 [default: 64]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l first-request-timeout -d 'How long a new connection may take to send its first request before it is dropped [default: 5s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l trusted-proxies -d 'Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; from anyone else it is ignored [default: none]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l tls-cert -d 'Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot\'s fullchain.pem); needs --tls-key. SIGHUP reloads both files' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l tls-key -d 'The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot\'s privkey.pem)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l event-history -d 'Pushes each org\'s event stream and the dashboard keep for clients that resume after a reconnect; at most --queue [default: 1000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l event-retention -d 'How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l max-body-memory -d 'Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too little left gets 503 with Retry-After [default: 64MiB]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l console -d 'Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404) [default: true]' -r -f -a "true\t''
false\t''"
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand serve" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l url -d 'The hub\'s base HTTP URL; the WebSocket URL is derived from it [default: url in the config file, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l jwt-secret -d 'HS256 secret used to mint the subscribers\' JWTs' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l api-key -d 'API key for publishing and for GET /api/v1/stats' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l ca-cert -d 'Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l spawn-redis-url -d 'With --spawn: the spawned hub fans out through this Redis, e.g. redis://127.0.0.1:6379' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l spawn-database-url -d 'With --spawn: the spawned hub stores in this PostgreSQL database instead of a temporary SQLite file' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l hub-pid -d 'The hub\'s process id, to report its CPU use (Linux /proc)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s n -l subscribers -d 'Subscriber connections (chat: members over all rooms)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l room-size -d 'Members per chat room' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s r -l rate -d 'Messages per second, over all groups (the open-loop schedule)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s d -l duration -d 'Length of the measured window, e.g. 10s, 1m' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s m -l messages -d 'Send this many measured messages instead of running for --duration' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l warmup -d 'How long to send first, left out of every result: 0s, 500ms, 1s' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l payload-size -d 'Approximate size of each message\'s data, in bytes' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l connect-rate -d 'New connections per second while connecting' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l connect-concurrency -d 'Handshakes in flight at once' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l connect-timeout -d 'Give up on a connection that is not established within this time' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l request-timeout -d 'Give up on a publish request after this time' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l max-inflight -d 'Publish requests in flight at once; beyond this sends wait and publisher lag grows' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l drain -d 'After the last send, wait this long at most for outstanding deliveries' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l source-ips -d 'Spread client sockets over local source addresses, e.g. 127.0.0.1-127.0.0.8' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s t -l threshold -d 'Fail (exit 3) unless this holds, e.g. \'p99<50ms\', \'loss=0\', \'deliveries_per_s>100000\'; repeatable' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l find-max-factor -d 'With --find-max: multiply the rate by this much per step' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l find-max-steps -d 'With --find-max: stop after this many steps' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l churn -d 'Fanout: this share of the subscribers drops per second and reconnects resuming from its last event (`?since=&epoch=`), while the publisher runs, e.g. 5%/s; loss must stay 0' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l restart-hub-at -d 'With --spawn, fanout: kill the hub (SIGKILL) this long after publishing starts, e.g. 5s, and start it again on the same store and port; subscribers reconnect and resume' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l report -d 'Write a self-contained HTML report with charts to this file' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l spawn -d 'Start a throwaway hub (a child `rtctl serve` on a free loopback port, fresh secrets, a temporary SQLite store) and bench it, ignoring --url, --jwt-secret and --api-key; none of your RTCTL_* variables reach that hub'
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l find-max -d 'Raise the rate step by step until a threshold fails; report the highest rate that held'
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -l json -d 'Print the summary as JSON on stdout instead of the table'
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s q -l quiet -d 'No progress bars, and no line before the run'
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand bench" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -f -a "jwt" -d 'Print a JWT for a user, signed with the configured HS256 secret or a private key'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -f -a "ws" -d 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -f -a "inspect" -d 'Decode a token, verify it against the configured key, and show when it expires'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and not __fish_seen_subcommand_from jwt ws inspect help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l user-id -d 'The user id (`sub` claim) of a minted token' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l org -d 'An organization the token\'s user belongs to (`orgs` claim); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l name -d 'The `name` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l email -d 'The `email` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l ttl -d 'Lifetime of a minted token, e.g. 15m, 1h, 7d' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l iss -d 'The `iss` claim, for a hub configured with an issuer' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l aud -d 'The `aud` claim, for a hub configured with an audience' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l private-key -d 'Sign with this PEM private key instead of the HS256 secret (needs --alg)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l alg -d 'Algorithm of --private-key' -r -f -a "RS256\t'RSA with SHA-256'
ES256\t'ECDSA on P-256 with SHA-256'"
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l kid -d '`kid` header naming the key, for a hub that verifies with a JWKS' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l staff -d 'Mint a staff token (`is_staff: true`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -l json -d 'Print JSON (the token with its claims) instead of the bare token'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from jwt" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l user-id -d 'The user id (`sub` claim) of a minted token' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l org -d 'An organization the token\'s user belongs to (`orgs` claim); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l name -d 'The `name` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l email -d 'The `email` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l ttl -d 'Lifetime of a minted token, e.g. 15m, 1h, 7d' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l iss -d 'The `iss` claim, for a hub configured with an issuer' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l aud -d 'The `aud` claim, for a hub configured with an audience' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l private-key -d 'Sign with this PEM private key instead of the HS256 secret (needs --alg)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l alg -d 'Algorithm of --private-key' -r -f -a "RS256\t'RSA with SHA-256'
ES256\t'ECDSA on P-256 with SHA-256'"
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l kid -d '`kid` header naming the key, for a hub that verifies with a JWKS' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l ca-cert -d 'Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l staff -d 'Mint a staff token (`is_staff: true`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -l json -d 'Print JSON (the token with its claims) instead of the bare token'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from ws" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l public-key -d 'Verify with this PEM public key instead of the HS256 secret' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l jwks -d 'Verify with this JWKS file (the key chosen by the token\'s kid)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l claim-user-id -d 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l claim-staff -d 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l claim-orgs -d 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l claim-name -d 'Claim holding the display name [default: name]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l claim-email -d 'Claim holding the email [default: email]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l json -d 'Print JSON: header, claims, the identity the hub maps them to, validity and seconds until expiry'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "jwt" -d 'Print a JWT for a user, signed with the configured HS256 secret or a private key'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "ws" -d 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "inspect" -d 'Decode a token, verify it against the configured key, and show when it expires'
complete -c rtctl -n "__fish_rtctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l user-id -d 'The user id (`sub` claim) of a minted token' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l org -d 'An organization the token\'s user belongs to (`orgs` claim); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l name -d 'The `name` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l email -d 'The `email` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l ttl -d 'Lifetime of a minted token, e.g. 15m, 1h, 7d' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l iss -d 'The `iss` claim, for a hub configured with an issuer' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l aud -d 'The `aud` claim, for a hub configured with an audience' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l private-key -d 'Sign with this PEM private key instead of the HS256 secret (needs --alg)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l alg -d 'Algorithm of --private-key' -r -f -a "RS256\t'RSA with SHA-256'
ES256\t'ECDSA on P-256 with SHA-256'"
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l kid -d '`kid` header naming the key, for a hub that verifies with a JWKS' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l token -d 'Use this token instead of minting one (a JWT or a ws token)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -s H -l header -d 'Extra request header; repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l origin -d 'Origin header to send, as a browser would' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l subprotocol -d 'Subprotocol to request in Sec-WebSocket-Protocol' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -s x -l execute -d 'Send this message after connecting (JSON or `type key=value`); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l wait -d 'End the session this long after connecting: 500ms, 2s, 1m (a plain number is seconds)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l until -d 'End the session when a message of this type arrives' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l staff -d 'Mint a staff token (`is_staff: true`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l ws-token -d 'Exchange the minted JWT for a single-use ws token first, as a browser would'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l raw -d 'Show frames as they arrive, without pretty-printing JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l timestamps -d 'Prefix every line with the local time'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l no-color -d 'No colors (NO_COLOR does the same)'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l json -d 'Write every frame to stdout as one JSON line (the default when stdin or stdout is not a terminal)'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -l no-reconnect -d 'End instead of reconnecting when the connection is lost (exit code 4)'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l user-id -d 'Recipient user id; repeat for several (one request, the same notification for each)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l title -d 'The notification\'s title' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l message -d 'The notification\'s text' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l type -d 'The notification type [hub default: general]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l data -d 'Extra data, a JSON object' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l link -d 'A link the client may open' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l count -d 'Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -l json -d 'Print the hub\'s replies as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -f -a "user" -d 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -f -a "pending-user" -d 'Register a user awaiting approval; admins on the dashboard get `new_user`'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -f -a "order" -d 'Push an order status change to the admins on the dashboard'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and not __fish_seen_subcommand_from user pending-user order help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l user-id -d 'Recipient user id; repeat for several (one request, the same notification for each)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l title -d 'The notification\'s title' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l message -d 'The notification\'s text' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l type -d 'The notification type [hub default: general]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l data -d 'Extra data, a JSON object' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l link -d 'A link the client may open' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l count -d 'Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -l json -d 'Print the hub\'s replies as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from user" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l user-id -d 'The user awaiting approval' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l email -d 'The user\'s email' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l name -d 'The user\'s display name' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -l json -d 'Print the hub\'s reply as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from pending-user" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l order-id -d 'The order whose status changed' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l status -d 'Its new status, e.g. paid, shipped' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l data -d 'Extra data, JSON' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -l json -d 'Print the hub\'s reply as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from order" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from help" -f -a "user" -d 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from help" -f -a "pending-user" -d 'Register a user awaiting approval; admins on the dashboard get `new_user`'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from help" -f -a "order" -d 'Push an order status change to the admins on the dashboard'
complete -c rtctl -n "__fish_rtctl_using_subcommand notify; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l org -d 'The organization, as a flag (the same as ORG)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l type -d 'The event type, free text such as user.joined or resource.created' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l data -d 'The event\'s data, JSON' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -l json -d 'Print the hub\'s reply as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand event" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -f -a "create" -d 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -f -a "list" -d 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -f -a "post" -d 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and not __fish_seen_subcommand_from create list post help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l member -d 'A member\'s user id; repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l name -d 'The room\'s display name [default: its id]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -l json -d 'Print the hub\'s reply as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l user-id -d 'The user id (`sub` claim) of a minted token' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l org -d 'An organization the token\'s user belongs to (`orgs` claim); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l name -d 'The `name` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l email -d 'The `email` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l ttl -d 'Lifetime of a minted token, e.g. 15m, 1h, 7d' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l iss -d 'The `iss` claim, for a hub configured with an issuer' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l aud -d 'The `aud` claim, for a hub configured with an audience' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l private-key -d 'Sign with this PEM private key instead of the HS256 secret (needs --alg)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l alg -d 'Algorithm of --private-key' -r -f -a "RS256\t'RSA with SHA-256'
ES256\t'ECDSA on P-256 with SHA-256'"
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l kid -d '`kid` header naming the key, for a hub that verifies with a JWKS' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l staff -d 'Mint a staff token (`is_staff: true`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -l json -d 'Print the hub\'s reply as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l user-id -d 'The user id (`sub` claim) of a minted token' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l org -d 'An organization the token\'s user belongs to (`orgs` claim); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l name -d 'The `name` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l email -d 'The `email` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l ttl -d 'Lifetime of a minted token, e.g. 15m, 1h, 7d' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l iss -d 'The `iss` claim, for a hub configured with an issuer' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l aud -d 'The `aud` claim, for a hub configured with an audience' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l private-key -d 'Sign with this PEM private key instead of the HS256 secret (needs --alg)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l alg -d 'Algorithm of --private-key' -r -f -a "RS256\t'RSA with SHA-256'
ES256\t'ECDSA on P-256 with SHA-256'"
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l kid -d '`kid` header naming the key, for a hub that verifies with a JWKS' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l staff -d 'Mint a staff token (`is_staff: true`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -l json -d 'Print the hub\'s reply as JSON'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from post" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from help" -f -a "post" -d 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)'
complete -c rtctl -n "__fish_rtctl_using_subcommand room; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -l json -d 'Print one JSON object with the three answers'
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -s w -l watch -d 'Redraw every second until Ctrl-C'
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l url -d 'The hub\'s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l jwt-secret -d 'The hub\'s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l api-key -d 'The hub\'s API key, for the publishing routes and the stats (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l ca-cert -d 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system\'s roots]' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l org -d 'An organization the token\'s user belongs to (`orgs` claim); repeat for several' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l name -d 'The `name` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l email -d 'The `email` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l ttl -d 'Lifetime of a minted token, e.g. 15m, 1h, 7d' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l iss -d 'The `iss` claim, for a hub configured with an issuer' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l aud -d 'The `aud` claim, for a hub configured with an audience' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l private-key -d 'Sign with this PEM private key instead of the HS256 secret (needs --alg)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l alg -d 'Algorithm of --private-key' -r -f -a "RS256\t'RSA with SHA-256'
ES256\t'ECDSA on P-256 with SHA-256'"
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l kid -d '`kid` header naming the key, for a hub that verifies with a JWKS' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l user-id -d 'Who the console signs in as (the token\'s `sub`): whose notifications, rooms and events it shows' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l open -d 'Open the link in the browser ($BROWSER, else xdg-open, or open on macOS) as well as printing it'
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -l staff -d 'Mint a staff token (`is_staff: true`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand console" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtctl -n "__fish_rtctl_using_subcommand copy-store" -l from -d 'The SQLite database to copy (stop the hubs that write to it first) [default: database_url in the config file when it is SQLite, else sqlite://rtctl-data/rtctl.db]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand copy-store" -l to -d 'The PostgreSQL database to copy into; it must hold no rows yet (its tables are made if missing)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand copy-store" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand copy-store" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand copy-store" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand completions" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand completions" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Validate the hub\'s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l bind -d 'Address to listen on [default: 127.0.0.1:8000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l jwt-secret -d 'HS256 secret that JWTs are signed with (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l jwt-public-key -d 'PEM public key to verify RS256/ES256 JWTs with, instead of the secret' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l jwks -d 'JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL (an identity provider\'s certs endpoint) fetched at start and kept fresh' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l jwks-refresh -d 'With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once, at most every 10s) [default: 5m]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l claim-user-id -d 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l claim-staff -d 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l claim-orgs -d 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l claim-name -d 'Claim holding the display name [default: name]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l claim-email -d 'Claim holding the email [default: email]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l jwt-issuer -d 'Required `iss` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l jwt-audience -d 'Required `aud` claim' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l api-key -d 'Key that backends send in X-API-Key (default: from the config file)' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l allowed-origins -d 'Browser origins allowed to connect: a comma list or `*` [default: same host only]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l database-url -d 'Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several machines [default: sqlite://rtctl-data/rtctl.db]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l database-pool -d 'Most connections this node opens to the database (PostgreSQL\'s are shared by every node) [default: 8 for SQLite, 16 for PostgreSQL]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l sqlite-synchronous -d 'SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose the last commits) [default: full]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l notification-retention -d 'Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever [default: off]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l redis-url -d 'Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every hub node on it [default: none, one node in memory]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l redis-prefix -d 'Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l redis-frame-key -d 'Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every node, at least 16 characters [default: from the config file, else derived from the API key]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l node-ttl -d 'With Redis: how long a node that died without closing its sockets still counts in presence (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l max-frame -d 'Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l queue -d 'Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l heartbeat-interval -d 'Interval between server WebSocket pings [default: 20s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l heartbeat-timeout -d 'Silence after which a connection is closed with 4000 [default: 60s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l send-timeout -d 'Longest a client\'s socket may refuse queued frames before it is closed with 4008 [default: 10s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l ws-token-ttl -d 'Lifetime of a ws token from /api/user/ws-token/ [default: 30m]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l shutdown-timeout -d 'Longest a shutdown waits for sockets and requests [default: 10s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l message-rate -d 'WebSocket frames (and JWT requests) a user may send per second across their connections; above it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429; 0 turns the limits off [default: 50]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l message-burst -d 'Frames (requests) that may come at once before --message-rate applies [default: 200]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l max-connections -d 'WebSocket connections this node serves at once; more are accepted and closed with 1013 [default: what the open-file limit allows, less 64 descriptors kept for HTTP]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l max-connections-per-user -d 'WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l max-unauthenticated-per-ip -d 'Connections from one client address that may wait for their first request at once; more get 429 [default: 64]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l first-request-timeout -d 'How long a new connection may take to send its first request before it is dropped [default: 5s]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l trusted-proxies -d 'Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; from anyone else it is ignored [default: none]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l tls-cert -d 'Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot\'s fullchain.pem); needs --tls-key. SIGHUP reloads both files' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l tls-key -d 'The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot\'s privkey.pem)' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l event-history -d 'Pushes each org\'s event stream and the dashboard keep for clients that resume after a reconnect; at most --queue [default: 1000]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l event-retention -d 'How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l max-body-memory -d 'Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too little left gets 503 with Retry-After [default: 64MiB]' -r
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l console -d 'Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404) [default: true]' -r -f -a "true\t''
false\t''"
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Config file with the hub\'s secrets; the first `rtctl serve` creates it' -r -F
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the hub\'s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong'
complete -c rtctl -n "__fish_rtctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "serve" -d 'Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "bench" -d 'Load-test fan-out latency of a hub (any hub that speaks the protocol)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "token" -d 'Mint a JWT, exchange it for a ws token, or inspect and verify a token'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "connect" -d 'Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "notify" -d 'Publish notifications (or, with a subcommand, pending users and order updates) through the API'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "event" -d 'Publish an organization event through the API'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "room" -d 'Chat rooms through the API: create one with its members, list a user\'s, post a message'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "status" -d 'Show a hub\'s health, readiness and figures'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "console" -d 'Print (or --open) a link that signs in to the hub\'s web console with a short-lived token'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "copy-store" -d 'Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "completions" -d 'Print a shell completion script'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "config" -d 'Check the hub\'s configuration: `rtctl config check [SERVE FLAGS]`'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and not __fish_seen_subcommand_from serve bench token connect notify event room status console copy-store completions config help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "jwt" -d 'Print a JWT for a user, signed with the configured HS256 secret or a private key'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "ws" -d 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "inspect" -d 'Decode a token, verify it against the configured key, and show when it expires'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from notify" -f -a "user" -d 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from notify" -f -a "pending-user" -d 'Register a user awaiting approval; admins on the dashboard get `new_user`'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from notify" -f -a "order" -d 'Push an order status change to the admins on the dashboard'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from room" -f -a "create" -d 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from room" -f -a "list" -d 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from room" -f -a "post" -d 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)'
complete -c rtctl -n "__fish_rtctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Validate the hub\'s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong'
