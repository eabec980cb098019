
use builtin;
use str;

set edit:completion:arg-completer[rtctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'rtctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'rtctl'= {
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port'
            cand bench 'Load-test fan-out latency of a hub (any hub that speaks the protocol)'
            cand token 'Mint a JWT, exchange it for a ws token, or inspect and verify a token'
            cand connect 'Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL'
            cand notify 'Publish notifications (or, with a subcommand, pending users and order updates) through the API'
            cand event 'Publish an organization event through the API'
            cand room 'Chat rooms through the API: create one with its members, list a user''s, post a message'
            cand status 'Show a hub''s health, readiness and figures'
            cand console 'Print (or --open) a link that signs in to the hub''s web console with a short-lived token'
            cand copy-store 'Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)'
            cand completions 'Print a shell completion script'
            cand config 'Check the hub''s configuration: `rtctl config check [SERVE FLAGS]`'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;serve'= {
            cand --bind 'Address to listen on [default: 127.0.0.1:8000]'
            cand --jwt-secret 'HS256 secret that JWTs are signed with (default: from the config file)'
            cand --jwt-public-key 'PEM public key to verify RS256/ES256 JWTs with, instead of the secret'
            cand --jwks 'JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL (an identity provider''s certs endpoint) fetched at start and kept fresh'
            cand --jwks-refresh 'With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once, at most every 10s) [default: 5m]'
            cand --claim-user-id 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]'
            cand --claim-staff 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]'
            cand --claim-orgs 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]'
            cand --claim-name 'Claim holding the display name [default: name]'
            cand --claim-email 'Claim holding the email [default: email]'
            cand --jwt-issuer 'Required `iss` claim'
            cand --jwt-audience 'Required `aud` claim'
            cand --api-key 'Key that backends send in X-API-Key (default: from the config file)'
            cand --allowed-origins 'Browser origins allowed to connect: a comma list or `*` [default: same host only]'
            cand --database-url 'Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several machines [default: sqlite://rtctl-data/rtctl.db]'
            cand --database-pool 'Most connections this node opens to the database (PostgreSQL''s are shared by every node) [default: 8 for SQLite, 16 for PostgreSQL]'
            cand --sqlite-synchronous 'SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose the last commits) [default: full]'
            cand --notification-retention 'Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever [default: off]'
            cand --redis-url 'Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every hub node on it [default: none, one node in memory]'
            cand --redis-prefix 'Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]'
            cand --redis-frame-key 'Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every node, at least 16 characters [default: from the config file, else derived from the API key]'
            cand --node-ttl 'With Redis: how long a node that died without closing its sockets still counts in presence (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]'
            cand --max-frame 'Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]'
            cand --queue 'Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]'
            cand --heartbeat-interval 'Interval between server WebSocket pings [default: 20s]'
            cand --heartbeat-timeout 'Silence after which a connection is closed with 4000 [default: 60s]'
            cand --send-timeout 'Longest a client''s socket may refuse queued frames before it is closed with 4008 [default: 10s]'
            cand --ws-token-ttl 'Lifetime of a ws token from /api/user/ws-token/ [default: 30m]'
            cand --shutdown-timeout 'Longest a shutdown waits for sockets and requests [default: 10s]'
            cand --message-rate 'WebSocket frames (and JWT requests) a user may send per second across their connections; above it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429; 0 turns the limits off [default: 50]'
            cand --message-burst 'Frames (requests) that may come at once before --message-rate applies [default: 200]'
            cand --max-connections 'WebSocket connections this node serves at once; more are accepted and closed with 1013 [default: what the open-file limit allows, less 64 descriptors kept for HTTP]'
            cand --max-connections-per-user 'WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]'
            cand --max-unauthenticated-per-ip 'Connections from one client address that may wait for their first request at once; more get 429 [default: 64]'
            cand --first-request-timeout 'How long a new connection may take to send its first request before it is dropped [default: 5s]'
            cand --trusted-proxies 'Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; from anyone else it is ignored [default: none]'
            cand --tls-cert 'Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot''s fullchain.pem); needs --tls-key. SIGHUP reloads both files'
            cand --tls-key 'The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot''s privkey.pem)'
            cand --event-history 'Pushes each org''s event stream and the dashboard keep for clients that resume after a reconnect; at most --queue [default: 1000]'
            cand --event-retention 'How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]'
            cand --max-body-memory 'Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too little left gets 503 with Retry-After [default: 64MiB]'
            cand --console 'Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404) [default: true]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;bench'= {
            cand --url 'The hub''s base HTTP URL; the WebSocket URL is derived from it [default: url in the config file, else http://127.0.0.1:8000]'
            cand --jwt-secret 'HS256 secret used to mint the subscribers'' JWTs'
            cand --api-key 'API key for publishing and for GET /api/v1/stats'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the config file, else the system''s roots]'
            cand --spawn-redis-url 'With --spawn: the spawned hub fans out through this Redis, e.g. redis://127.0.0.1:6379'
            cand --spawn-database-url 'With --spawn: the spawned hub stores in this PostgreSQL database instead of a temporary SQLite file'
            cand --hub-pid 'The hub''s process id, to report its CPU use (Linux /proc)'
            cand -n 'Subscriber connections (chat: members over all rooms)'
            cand --subscribers 'Subscriber connections (chat: members over all rooms)'
            cand --room-size 'Members per chat room'
            cand -r 'Messages per second, over all groups (the open-loop schedule)'
            cand --rate 'Messages per second, over all groups (the open-loop schedule)'
            cand -d 'Length of the measured window, e.g. 10s, 1m'
            cand --duration 'Length of the measured window, e.g. 10s, 1m'
            cand -m 'Send this many measured messages instead of running for --duration'
            cand --messages 'Send this many measured messages instead of running for --duration'
            cand --warmup 'How long to send first, left out of every result: 0s, 500ms, 1s'
            cand --payload-size 'Approximate size of each message''s data, in bytes'
            cand --connect-rate 'New connections per second while connecting'
            cand --connect-concurrency 'Handshakes in flight at once'
            cand --connect-timeout 'Give up on a connection that is not established within this time'
            cand --request-timeout 'Give up on a publish request after this time'
            cand --max-inflight 'Publish requests in flight at once; beyond this sends wait and publisher lag grows'
            cand --drain 'After the last send, wait this long at most for outstanding deliveries'
            cand --source-ips 'Spread client sockets over local source addresses, e.g. 127.0.0.1-127.0.0.8'
            cand -t 'Fail (exit 3) unless this holds, e.g. ''p99<50ms'', ''loss=0'', ''deliveries_per_s>100000''; repeatable'
            cand --threshold 'Fail (exit 3) unless this holds, e.g. ''p99<50ms'', ''loss=0'', ''deliveries_per_s>100000''; repeatable'
            cand --find-max-factor 'With --find-max: multiply the rate by this much per step'
            cand --find-max-steps 'With --find-max: stop after this many steps'
            cand --churn 'Fanout: this share of the subscribers drops per second and reconnects resuming from its last event (`?since=&epoch=`), while the publisher runs, e.g. 5%/s; loss must stay 0'
            cand --restart-hub-at 'With --spawn, fanout: kill the hub (SIGKILL) this long after publishing starts, e.g. 5s, and start it again on the same store and port; subscribers reconnect and resume'
            cand --report 'Write a self-contained HTML report with charts to this file'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --spawn 'Start a throwaway hub (a child `rtctl serve` on a free loopback port, fresh secrets, a temporary SQLite store) and bench it, ignoring --url, --jwt-secret and --api-key; none of your RTCTL_* variables reach that hub'
            cand --find-max 'Raise the rate step by step until a threshold fails; report the highest rate that held'
            cand --json 'Print the summary as JSON on stdout instead of the table'
            cand -q 'No progress bars, and no line before the run'
            cand --quiet 'No progress bars, and no line before the run'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;token'= {
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand jwt 'Print a JWT for a user, signed with the configured HS256 secret or a private key'
            cand ws 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token'
            cand inspect 'Decode a token, verify it against the configured key, and show when it expires'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;token;jwt'= {
            cand --user-id 'The user id (`sub` claim) of a minted token'
            cand --org 'An organization the token''s user belongs to (`orgs` claim); repeat for several'
            cand --name 'The `name` claim'
            cand --email 'The `email` claim'
            cand --ttl 'Lifetime of a minted token, e.g. 15m, 1h, 7d'
            cand --iss 'The `iss` claim, for a hub configured with an issuer'
            cand --aud 'The `aud` claim, for a hub configured with an audience'
            cand --private-key 'Sign with this PEM private key instead of the HS256 secret (needs --alg)'
            cand --alg 'Algorithm of --private-key'
            cand --kid '`kid` header naming the key, for a hub that verifies with a JWKS'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --staff 'Mint a staff token (`is_staff: true`)'
            cand --json 'Print JSON (the token with its claims) instead of the bare token'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'rtctl;token;ws'= {
            cand --user-id 'The user id (`sub` claim) of a minted token'
            cand --org 'An organization the token''s user belongs to (`orgs` claim); repeat for several'
            cand --name 'The `name` claim'
            cand --email 'The `email` claim'
            cand --ttl 'Lifetime of a minted token, e.g. 15m, 1h, 7d'
            cand --iss 'The `iss` claim, for a hub configured with an issuer'
            cand --aud 'The `aud` claim, for a hub configured with an audience'
            cand --private-key 'Sign with this PEM private key instead of the HS256 secret (needs --alg)'
            cand --alg 'Algorithm of --private-key'
            cand --kid '`kid` header naming the key, for a hub that verifies with a JWKS'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the config file, else the system''s roots]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --staff 'Mint a staff token (`is_staff: true`)'
            cand --json 'Print JSON (the token with its claims) instead of the bare token'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'rtctl;token;inspect'= {
            cand --public-key 'Verify with this PEM public key instead of the HS256 secret'
            cand --jwks 'Verify with this JWKS file (the key chosen by the token''s kid)'
            cand --claim-user-id 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]'
            cand --claim-staff 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]'
            cand --claim-orgs 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]'
            cand --claim-name 'Claim holding the display name [default: name]'
            cand --claim-email 'Claim holding the email [default: email]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print JSON: header, claims, the identity the hub maps them to, validity and seconds until expiry'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;token;help'= {
            cand jwt 'Print a JWT for a user, signed with the configured HS256 secret or a private key'
            cand ws 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token'
            cand inspect 'Decode a token, verify it against the configured key, and show when it expires'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;token;help;jwt'= {
        }
        &'rtctl;token;help;ws'= {
        }
        &'rtctl;token;help;inspect'= {
        }
        &'rtctl;token;help;help'= {
        }
        &'rtctl;connect'= {
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --user-id 'The user id (`sub` claim) of a minted token'
            cand --org 'An organization the token''s user belongs to (`orgs` claim); repeat for several'
            cand --name 'The `name` claim'
            cand --email 'The `email` claim'
            cand --ttl 'Lifetime of a minted token, e.g. 15m, 1h, 7d'
            cand --iss 'The `iss` claim, for a hub configured with an issuer'
            cand --aud 'The `aud` claim, for a hub configured with an audience'
            cand --private-key 'Sign with this PEM private key instead of the HS256 secret (needs --alg)'
            cand --alg 'Algorithm of --private-key'
            cand --kid '`kid` header naming the key, for a hub that verifies with a JWKS'
            cand --token 'Use this token instead of minting one (a JWT or a ws token)'
            cand -H 'Extra request header; repeat for several'
            cand --header 'Extra request header; repeat for several'
            cand --origin 'Origin header to send, as a browser would'
            cand --subprotocol 'Subprotocol to request in Sec-WebSocket-Protocol'
            cand -x 'Send this message after connecting (JSON or `type key=value`); repeat for several'
            cand --execute 'Send this message after connecting (JSON or `type key=value`); repeat for several'
            cand --wait 'End the session this long after connecting: 500ms, 2s, 1m (a plain number is seconds)'
            cand --until 'End the session when a message of this type arrives'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --staff 'Mint a staff token (`is_staff: true`)'
            cand --ws-token 'Exchange the minted JWT for a single-use ws token first, as a browser would'
            cand --raw 'Show frames as they arrive, without pretty-printing JSON'
            cand --timestamps 'Prefix every line with the local time'
            cand --no-color 'No colors (NO_COLOR does the same)'
            cand --json 'Write every frame to stdout as one JSON line (the default when stdin or stdout is not a terminal)'
            cand --no-reconnect 'End instead of reconnecting when the connection is lost (exit code 4)'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'rtctl;notify'= {
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --user-id 'Recipient user id; repeat for several (one request, the same notification for each)'
            cand --title 'The notification''s title'
            cand --message 'The notification''s text'
            cand --type 'The notification type [hub default: general]'
            cand --data 'Extra data, a JSON object'
            cand --link 'A link the client may open'
            cand --count 'Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print the hub''s replies as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand user 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)'
            cand pending-user 'Register a user awaiting approval; admins on the dashboard get `new_user`'
            cand order 'Push an order status change to the admins on the dashboard'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;notify;user'= {
            cand --user-id 'Recipient user id; repeat for several (one request, the same notification for each)'
            cand --title 'The notification''s title'
            cand --message 'The notification''s text'
            cand --type 'The notification type [hub default: general]'
            cand --data 'Extra data, a JSON object'
            cand --link 'A link the client may open'
            cand --count 'Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print the hub''s replies as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;notify;pending-user'= {
            cand --user-id 'The user awaiting approval'
            cand --email 'The user''s email'
            cand --name 'The user''s display name'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print the hub''s reply as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;notify;order'= {
            cand --order-id 'The order whose status changed'
            cand --status 'Its new status, e.g. paid, shipped'
            cand --data 'Extra data, JSON'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print the hub''s reply as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;notify;help'= {
            cand user 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)'
            cand pending-user 'Register a user awaiting approval; admins on the dashboard get `new_user`'
            cand order 'Push an order status change to the admins on the dashboard'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;notify;help;user'= {
        }
        &'rtctl;notify;help;pending-user'= {
        }
        &'rtctl;notify;help;order'= {
        }
        &'rtctl;notify;help;help'= {
        }
        &'rtctl;event'= {
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --org 'The organization, as a flag (the same as ORG)'
            cand --type 'The event type, free text such as user.joined or resource.created'
            cand --data 'The event''s data, JSON'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print the hub''s reply as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;room'= {
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand create 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)'
            cand list 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)'
            cand post 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;room;create'= {
            cand --member 'A member''s user id; repeat for several'
            cand --name 'The room''s display name [default: its id]'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print the hub''s reply as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;room;list'= {
            cand --user-id 'The user id (`sub` claim) of a minted token'
            cand --org 'An organization the token''s user belongs to (`orgs` claim); repeat for several'
            cand --name 'The `name` claim'
            cand --email 'The `email` claim'
            cand --ttl 'Lifetime of a minted token, e.g. 15m, 1h, 7d'
            cand --iss 'The `iss` claim, for a hub configured with an issuer'
            cand --aud 'The `aud` claim, for a hub configured with an audience'
            cand --private-key 'Sign with this PEM private key instead of the HS256 secret (needs --alg)'
            cand --alg 'Algorithm of --private-key'
            cand --kid '`kid` header naming the key, for a hub that verifies with a JWKS'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --staff 'Mint a staff token (`is_staff: true`)'
            cand --json 'Print the hub''s reply as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'rtctl;room;post'= {
            cand --user-id 'The user id (`sub` claim) of a minted token'
            cand --org 'An organization the token''s user belongs to (`orgs` claim); repeat for several'
            cand --name 'The `name` claim'
            cand --email 'The `email` claim'
            cand --ttl 'Lifetime of a minted token, e.g. 15m, 1h, 7d'
            cand --iss 'The `iss` claim, for a hub configured with an issuer'
            cand --aud 'The `aud` claim, for a hub configured with an audience'
            cand --private-key 'Sign with this PEM private key instead of the HS256 secret (needs --alg)'
            cand --alg 'Algorithm of --private-key'
            cand --kid '`kid` header naming the key, for a hub that verifies with a JWKS'
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --staff 'Mint a staff token (`is_staff: true`)'
            cand --json 'Print the hub''s reply as JSON'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'rtctl;room;help'= {
            cand create 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)'
            cand list 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)'
            cand post 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;room;help;create'= {
        }
        &'rtctl;room;help;list'= {
        }
        &'rtctl;room;help;post'= {
        }
        &'rtctl;room;help;help'= {
        }
        &'rtctl;status'= {
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --json 'Print one JSON object with the three answers'
            cand -w 'Redraw every second until Ctrl-C'
            cand --watch 'Redraw every second until Ctrl-C'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;console'= {
            cand --url 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]'
            cand --jwt-secret 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)'
            cand --api-key 'The hub''s API key, for the publishing routes and the stats (default: from the config file)'
            cand --ca-cert 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]'
            cand --org 'An organization the token''s user belongs to (`orgs` claim); repeat for several'
            cand --name 'The `name` claim'
            cand --email 'The `email` claim'
            cand --ttl 'Lifetime of a minted token, e.g. 15m, 1h, 7d'
            cand --iss 'The `iss` claim, for a hub configured with an issuer'
            cand --aud 'The `aud` claim, for a hub configured with an audience'
            cand --private-key 'Sign with this PEM private key instead of the HS256 secret (needs --alg)'
            cand --alg 'Algorithm of --private-key'
            cand --kid '`kid` header naming the key, for a hub that verifies with a JWKS'
            cand --user-id 'Who the console signs in as (the token''s `sub`): whose notifications, rooms and events it shows'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand --open 'Open the link in the browser ($BROWSER, else xdg-open, or open on macOS) as well as printing it'
            cand --staff 'Mint a staff token (`is_staff: true`)'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'rtctl;copy-store'= {
            cand --from 'The SQLite database to copy (stop the hubs that write to it first) [default: database_url in the config file when it is SQLite, else sqlite://rtctl-data/rtctl.db]'
            cand --to 'The PostgreSQL database to copy into; it must hold no rows yet (its tables are made if missing)'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;completions'= {
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;config'= {
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand check 'Validate the hub''s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;config;check'= {
            cand --bind 'Address to listen on [default: 127.0.0.1:8000]'
            cand --jwt-secret 'HS256 secret that JWTs are signed with (default: from the config file)'
            cand --jwt-public-key 'PEM public key to verify RS256/ES256 JWTs with, instead of the secret'
            cand --jwks 'JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL (an identity provider''s certs endpoint) fetched at start and kept fresh'
            cand --jwks-refresh 'With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once, at most every 10s) [default: 5m]'
            cand --claim-user-id 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]'
            cand --claim-staff 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]'
            cand --claim-orgs 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]'
            cand --claim-name 'Claim holding the display name [default: name]'
            cand --claim-email 'Claim holding the email [default: email]'
            cand --jwt-issuer 'Required `iss` claim'
            cand --jwt-audience 'Required `aud` claim'
            cand --api-key 'Key that backends send in X-API-Key (default: from the config file)'
            cand --allowed-origins 'Browser origins allowed to connect: a comma list or `*` [default: same host only]'
            cand --database-url 'Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several machines [default: sqlite://rtctl-data/rtctl.db]'
            cand --database-pool 'Most connections this node opens to the database (PostgreSQL''s are shared by every node) [default: 8 for SQLite, 16 for PostgreSQL]'
            cand --sqlite-synchronous 'SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose the last commits) [default: full]'
            cand --notification-retention 'Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever [default: off]'
            cand --redis-url 'Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every hub node on it [default: none, one node in memory]'
            cand --redis-prefix 'Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]'
            cand --redis-frame-key 'Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every node, at least 16 characters [default: from the config file, else derived from the API key]'
            cand --node-ttl 'With Redis: how long a node that died without closing its sockets still counts in presence (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]'
            cand --max-frame 'Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]'
            cand --queue 'Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]'
            cand --heartbeat-interval 'Interval between server WebSocket pings [default: 20s]'
            cand --heartbeat-timeout 'Silence after which a connection is closed with 4000 [default: 60s]'
            cand --send-timeout 'Longest a client''s socket may refuse queued frames before it is closed with 4008 [default: 10s]'
            cand --ws-token-ttl 'Lifetime of a ws token from /api/user/ws-token/ [default: 30m]'
            cand --shutdown-timeout 'Longest a shutdown waits for sockets and requests [default: 10s]'
            cand --message-rate 'WebSocket frames (and JWT requests) a user may send per second across their connections; above it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429; 0 turns the limits off [default: 50]'
            cand --message-burst 'Frames (requests) that may come at once before --message-rate applies [default: 200]'
            cand --max-connections 'WebSocket connections this node serves at once; more are accepted and closed with 1013 [default: what the open-file limit allows, less 64 descriptors kept for HTTP]'
            cand --max-connections-per-user 'WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]'
            cand --max-unauthenticated-per-ip 'Connections from one client address that may wait for their first request at once; more get 429 [default: 64]'
            cand --first-request-timeout 'How long a new connection may take to send its first request before it is dropped [default: 5s]'
            cand --trusted-proxies 'Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; from anyone else it is ignored [default: none]'
            cand --tls-cert 'Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot''s fullchain.pem); needs --tls-key. SIGHUP reloads both files'
            cand --tls-key 'The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot''s privkey.pem)'
            cand --event-history 'Pushes each org''s event stream and the dashboard keep for clients that resume after a reconnect; at most --queue [default: 1000]'
            cand --event-retention 'How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]'
            cand --max-body-memory 'Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too little left gets 503 with Retry-After [default: 64MiB]'
            cand --console 'Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404) [default: true]'
            cand --config 'Config file with the hub''s secrets; the first `rtctl serve` creates it'
            cand -v 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand --verbose 'More log output: -v debug, -vv trace (RUST_LOG overrides)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'rtctl;config;help'= {
            cand check 'Validate the hub''s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;config;help;check'= {
        }
        &'rtctl;config;help;help'= {
        }
        &'rtctl;help'= {
            cand serve 'Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port'
            cand bench 'Load-test fan-out latency of a hub (any hub that speaks the protocol)'
            cand token 'Mint a JWT, exchange it for a ws token, or inspect and verify a token'
            cand connect 'Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL'
            cand notify 'Publish notifications (or, with a subcommand, pending users and order updates) through the API'
            cand event 'Publish an organization event through the API'
            cand room 'Chat rooms through the API: create one with its members, list a user''s, post a message'
            cand status 'Show a hub''s health, readiness and figures'
            cand console 'Print (or --open) a link that signs in to the hub''s web console with a short-lived token'
            cand copy-store 'Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)'
            cand completions 'Print a shell completion script'
            cand config 'Check the hub''s configuration: `rtctl config check [SERVE FLAGS]`'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'rtctl;help;serve'= {
        }
        &'rtctl;help;bench'= {
        }
        &'rtctl;help;token'= {
            cand jwt 'Print a JWT for a user, signed with the configured HS256 secret or a private key'
            cand ws 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token'
            cand inspect 'Decode a token, verify it against the configured key, and show when it expires'
        }
        &'rtctl;help;token;jwt'= {
        }
        &'rtctl;help;token;ws'= {
        }
        &'rtctl;help;token;inspect'= {
        }
        &'rtctl;help;connect'= {
        }
        &'rtctl;help;notify'= {
            cand user 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)'
            cand pending-user 'Register a user awaiting approval; admins on the dashboard get `new_user`'
            cand order 'Push an order status change to the admins on the dashboard'
        }
        &'rtctl;help;notify;user'= {
        }
        &'rtctl;help;notify;pending-user'= {
        }
        &'rtctl;help;notify;order'= {
        }
        &'rtctl;help;event'= {
        }
        &'rtctl;help;room'= {
            cand create 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)'
            cand list 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)'
            cand post 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)'
        }
        &'rtctl;help;room;create'= {
        }
        &'rtctl;help;room;list'= {
        }
        &'rtctl;help;room;post'= {
        }
        &'rtctl;help;status'= {
        }
        &'rtctl;help;console'= {
        }
        &'rtctl;help;copy-store'= {
        }
        &'rtctl;help;completions'= {
        }
        &'rtctl;help;config'= {
            cand check 'Validate the hub''s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong'
        }
        &'rtctl;help;config;check'= {
        }
        &'rtctl;help;help'= {
        }
    ]
    $completions[$command]
}
