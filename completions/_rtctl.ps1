
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'rtctl' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'rtctl'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'rtctl' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load-test fan-out latency of a hub (any hub that speaks the protocol)')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Mint a JWT, exchange it for a ws token, or inspect and verify a token')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL')
            [CompletionResult]::new('notify', 'notify', [CompletionResultType]::ParameterValue, 'Publish notifications (or, with a subcommand, pending users and order updates) through the API')
            [CompletionResult]::new('event', 'event', [CompletionResultType]::ParameterValue, 'Publish an organization event through the API')
            [CompletionResult]::new('room', 'room', [CompletionResultType]::ParameterValue, 'Chat rooms through the API: create one with its members, list a user''s, post a message')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a hub''s health, readiness and figures')
            [CompletionResult]::new('console', 'console', [CompletionResultType]::ParameterValue, 'Print (or --open) a link that signs in to the hub''s web console with a short-lived token')
            [CompletionResult]::new('copy-store', 'copy-store', [CompletionResultType]::ParameterValue, 'Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Check the hub''s configuration: `rtctl config check [SERVE FLAGS]`')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;serve' {
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address to listen on [default: 127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'HS256 secret that JWTs are signed with (default: from the config file)')
            [CompletionResult]::new('--jwt-public-key', '--jwt-public-key', [CompletionResultType]::ParameterName, 'PEM public key to verify RS256/ES256 JWTs with, instead of the secret')
            [CompletionResult]::new('--jwks', '--jwks', [CompletionResultType]::ParameterName, 'JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL (an identity provider''s certs endpoint) fetched at start and kept fresh')
            [CompletionResult]::new('--jwks-refresh', '--jwks-refresh', [CompletionResultType]::ParameterName, 'With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once, at most every 10s) [default: 5m]')
            [CompletionResult]::new('--claim-user-id', '--claim-user-id', [CompletionResultType]::ParameterName, 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]')
            [CompletionResult]::new('--claim-staff', '--claim-staff', [CompletionResultType]::ParameterName, 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]')
            [CompletionResult]::new('--claim-orgs', '--claim-orgs', [CompletionResultType]::ParameterName, 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]')
            [CompletionResult]::new('--claim-name', '--claim-name', [CompletionResultType]::ParameterName, 'Claim holding the display name [default: name]')
            [CompletionResult]::new('--claim-email', '--claim-email', [CompletionResultType]::ParameterName, 'Claim holding the email [default: email]')
            [CompletionResult]::new('--jwt-issuer', '--jwt-issuer', [CompletionResultType]::ParameterName, 'Required `iss` claim')
            [CompletionResult]::new('--jwt-audience', '--jwt-audience', [CompletionResultType]::ParameterName, 'Required `aud` claim')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'Key that backends send in X-API-Key (default: from the config file)')
            [CompletionResult]::new('--allowed-origins', '--allowed-origins', [CompletionResultType]::ParameterName, 'Browser origins allowed to connect: a comma list or `*` [default: same host only]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several machines [default: sqlite://rtctl-data/rtctl.db]')
            [CompletionResult]::new('--database-pool', '--database-pool', [CompletionResultType]::ParameterName, 'Most connections this node opens to the database (PostgreSQL''s are shared by every node) [default: 8 for SQLite, 16 for PostgreSQL]')
            [CompletionResult]::new('--sqlite-synchronous', '--sqlite-synchronous', [CompletionResultType]::ParameterName, 'SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose the last commits) [default: full]')
            [CompletionResult]::new('--notification-retention', '--notification-retention', [CompletionResultType]::ParameterName, 'Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever [default: off]')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every hub node on it [default: none, one node in memory]')
            [CompletionResult]::new('--redis-prefix', '--redis-prefix', [CompletionResultType]::ParameterName, 'Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]')
            [CompletionResult]::new('--redis-frame-key', '--redis-frame-key', [CompletionResultType]::ParameterName, 'Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every node, at least 16 characters [default: from the config file, else derived from the API key]')
            [CompletionResult]::new('--node-ttl', '--node-ttl', [CompletionResultType]::ParameterName, 'With Redis: how long a node that died without closing its sockets still counts in presence (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]')
            [CompletionResult]::new('--max-frame', '--max-frame', [CompletionResultType]::ParameterName, 'Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]')
            [CompletionResult]::new('--queue', '--queue', [CompletionResultType]::ParameterName, 'Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]')
            [CompletionResult]::new('--heartbeat-interval', '--heartbeat-interval', [CompletionResultType]::ParameterName, 'Interval between server WebSocket pings [default: 20s]')
            [CompletionResult]::new('--heartbeat-timeout', '--heartbeat-timeout', [CompletionResultType]::ParameterName, 'Silence after which a connection is closed with 4000 [default: 60s]')
            [CompletionResult]::new('--send-timeout', '--send-timeout', [CompletionResultType]::ParameterName, 'Longest a client''s socket may refuse queued frames before it is closed with 4008 [default: 10s]')
            [CompletionResult]::new('--ws-token-ttl', '--ws-token-ttl', [CompletionResultType]::ParameterName, 'Lifetime of a ws token from /api/user/ws-token/ [default: 30m]')
            [CompletionResult]::new('--shutdown-timeout', '--shutdown-timeout', [CompletionResultType]::ParameterName, 'Longest a shutdown waits for sockets and requests [default: 10s]')
            [CompletionResult]::new('--message-rate', '--message-rate', [CompletionResultType]::ParameterName, 'WebSocket frames (and JWT requests) a user may send per second across their connections; above it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429; 0 turns the limits off [default: 50]')
            [CompletionResult]::new('--message-burst', '--message-burst', [CompletionResultType]::ParameterName, 'Frames (requests) that may come at once before --message-rate applies [default: 200]')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'WebSocket connections this node serves at once; more are accepted and closed with 1013 [default: what the open-file limit allows, less 64 descriptors kept for HTTP]')
            [CompletionResult]::new('--max-connections-per-user', '--max-connections-per-user', [CompletionResultType]::ParameterName, 'WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]')
            [CompletionResult]::new('--max-unauthenticated-per-ip', '--max-unauthenticated-per-ip', [CompletionResultType]::ParameterName, 'Connections from one client address that may wait for their first request at once; more get 429 [default: 64]')
            [CompletionResult]::new('--first-request-timeout', '--first-request-timeout', [CompletionResultType]::ParameterName, 'How long a new connection may take to send its first request before it is dropped [default: 5s]')
            [CompletionResult]::new('--trusted-proxies', '--trusted-proxies', [CompletionResultType]::ParameterName, 'Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; from anyone else it is ignored [default: none]')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot''s fullchain.pem); needs --tls-key. SIGHUP reloads both files')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot''s privkey.pem)')
            [CompletionResult]::new('--event-history', '--event-history', [CompletionResultType]::ParameterName, 'Pushes each org''s event stream and the dashboard keep for clients that resume after a reconnect; at most --queue [default: 1000]')
            [CompletionResult]::new('--event-retention', '--event-retention', [CompletionResultType]::ParameterName, 'How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]')
            [CompletionResult]::new('--max-body-memory', '--max-body-memory', [CompletionResultType]::ParameterName, 'Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too little left gets 503 with Retry-After [default: 64MiB]')
            [CompletionResult]::new('--console', '--console', [CompletionResultType]::ParameterName, 'Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404) [default: true]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;bench' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base HTTP URL; the WebSocket URL is derived from it [default: url in the config file, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'HS256 secret used to mint the subscribers'' JWTs')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'API key for publishing and for GET /api/v1/stats')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--spawn-redis-url', '--spawn-redis-url', [CompletionResultType]::ParameterName, 'With --spawn: the spawned hub fans out through this Redis, e.g. redis://127.0.0.1:6379')
            [CompletionResult]::new('--spawn-database-url', '--spawn-database-url', [CompletionResultType]::ParameterName, 'With --spawn: the spawned hub stores in this PostgreSQL database instead of a temporary SQLite file')
            [CompletionResult]::new('--hub-pid', '--hub-pid', [CompletionResultType]::ParameterName, 'The hub''s process id, to report its CPU use (Linux /proc)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Subscriber connections (chat: members over all rooms)')
            [CompletionResult]::new('--subscribers', '--subscribers', [CompletionResultType]::ParameterName, 'Subscriber connections (chat: members over all rooms)')
            [CompletionResult]::new('--room-size', '--room-size', [CompletionResultType]::ParameterName, 'Members per chat room')
            [CompletionResult]::new('-r', '-r', [CompletionResultType]::ParameterName, 'Messages per second, over all groups (the open-loop schedule)')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'Messages per second, over all groups (the open-loop schedule)')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'Length of the measured window, e.g. 10s, 1m')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Length of the measured window, e.g. 10s, 1m')
            [CompletionResult]::new('-m', '-m', [CompletionResultType]::ParameterName, 'Send this many measured messages instead of running for --duration')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'Send this many measured messages instead of running for --duration')
            [CompletionResult]::new('--warmup', '--warmup', [CompletionResultType]::ParameterName, 'How long to send first, left out of every result: 0s, 500ms, 1s')
            [CompletionResult]::new('--payload-size', '--payload-size', [CompletionResultType]::ParameterName, 'Approximate size of each message''s data, in bytes')
            [CompletionResult]::new('--connect-rate', '--connect-rate', [CompletionResultType]::ParameterName, 'New connections per second while connecting')
            [CompletionResult]::new('--connect-concurrency', '--connect-concurrency', [CompletionResultType]::ParameterName, 'Handshakes in flight at once')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up on a connection that is not established within this time')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Give up on a publish request after this time')
            [CompletionResult]::new('--max-inflight', '--max-inflight', [CompletionResultType]::ParameterName, 'Publish requests in flight at once; beyond this sends wait and publisher lag grows')
            [CompletionResult]::new('--drain', '--drain', [CompletionResultType]::ParameterName, 'After the last send, wait this long at most for outstanding deliveries')
            [CompletionResult]::new('--source-ips', '--source-ips', [CompletionResultType]::ParameterName, 'Spread client sockets over local source addresses, e.g. 127.0.0.1-127.0.0.8')
            [CompletionResult]::new('-t', '-t', [CompletionResultType]::ParameterName, 'Fail (exit 3) unless this holds, e.g. ''p99<50ms'', ''loss=0'', ''deliveries_per_s>100000''; repeatable')
            [CompletionResult]::new('--threshold', '--threshold', [CompletionResultType]::ParameterName, 'Fail (exit 3) unless this holds, e.g. ''p99<50ms'', ''loss=0'', ''deliveries_per_s>100000''; repeatable')
            [CompletionResult]::new('--find-max-factor', '--find-max-factor', [CompletionResultType]::ParameterName, 'With --find-max: multiply the rate by this much per step')
            [CompletionResult]::new('--find-max-steps', '--find-max-steps', [CompletionResultType]::ParameterName, 'With --find-max: stop after this many steps')
            [CompletionResult]::new('--churn', '--churn', [CompletionResultType]::ParameterName, 'Fanout: this share of the subscribers drops per second and reconnects resuming from its last event (`?since=&epoch=`), while the publisher runs, e.g. 5%/s; loss must stay 0')
            [CompletionResult]::new('--restart-hub-at', '--restart-hub-at', [CompletionResultType]::ParameterName, 'With --spawn, fanout: kill the hub (SIGKILL) this long after publishing starts, e.g. 5s, and start it again on the same store and port; subscribers reconnect and resume')
            [CompletionResult]::new('--report', '--report', [CompletionResultType]::ParameterName, 'Write a self-contained HTML report with charts to this file')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--spawn', '--spawn', [CompletionResultType]::ParameterName, 'Start a throwaway hub (a child `rtctl serve` on a free loopback port, fresh secrets, a temporary SQLite store) and bench it, ignoring --url, --jwt-secret and --api-key; none of your RTCTL_* variables reach that hub')
            [CompletionResult]::new('--find-max', '--find-max', [CompletionResultType]::ParameterName, 'Raise the rate step by step until a threshold fails; report the highest rate that held')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the summary as JSON on stdout instead of the table')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, and no line before the run')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, and no line before the run')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;token' {
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('jwt', 'jwt', [CompletionResultType]::ParameterValue, 'Print a JWT for a user, signed with the configured HS256 secret or a private key')
            [CompletionResult]::new('ws', 'ws', [CompletionResultType]::ParameterValue, 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a token, verify it against the configured key, and show when it expires')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;token;jwt' {
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'The user id (`sub` claim) of a minted token')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'An organization the token''s user belongs to (`orgs` claim); repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The `name` claim')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The `email` claim')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime of a minted token, e.g. 15m, 1h, 7d')
            [CompletionResult]::new('--iss', '--iss', [CompletionResultType]::ParameterName, 'The `iss` claim, for a hub configured with an issuer')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The `aud` claim, for a hub configured with an audience')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Sign with this PEM private key instead of the HS256 secret (needs --alg)')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'Algorithm of --private-key')
            [CompletionResult]::new('--kid', '--kid', [CompletionResultType]::ParameterName, '`kid` header naming the key, for a hub that verifies with a JWKS')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--staff', '--staff', [CompletionResultType]::ParameterName, 'Mint a staff token (`is_staff: true`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (the token with its claims) instead of the bare token')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'rtctl;token;ws' {
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'The user id (`sub` claim) of a minted token')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'An organization the token''s user belongs to (`orgs` claim); repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The `name` claim')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The `email` claim')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime of a minted token, e.g. 15m, 1h, 7d')
            [CompletionResult]::new('--iss', '--iss', [CompletionResultType]::ParameterName, 'The `iss` claim, for a hub configured with an issuer')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The `aud` claim, for a hub configured with an audience')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Sign with this PEM private key instead of the HS256 secret (needs --alg)')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'Algorithm of --private-key')
            [CompletionResult]::new('--kid', '--kid', [CompletionResultType]::ParameterName, '`kid` header naming the key, for a hub that verifies with a JWKS')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--staff', '--staff', [CompletionResultType]::ParameterName, 'Mint a staff token (`is_staff: true`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (the token with its claims) instead of the bare token')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'rtctl;token;inspect' {
            [CompletionResult]::new('--public-key', '--public-key', [CompletionResultType]::ParameterName, 'Verify with this PEM public key instead of the HS256 secret')
            [CompletionResult]::new('--jwks', '--jwks', [CompletionResultType]::ParameterName, 'Verify with this JWKS file (the key chosen by the token''s kid)')
            [CompletionResult]::new('--claim-user-id', '--claim-user-id', [CompletionResultType]::ParameterName, 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]')
            [CompletionResult]::new('--claim-staff', '--claim-staff', [CompletionResultType]::ParameterName, 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]')
            [CompletionResult]::new('--claim-orgs', '--claim-orgs', [CompletionResultType]::ParameterName, 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]')
            [CompletionResult]::new('--claim-name', '--claim-name', [CompletionResultType]::ParameterName, 'Claim holding the display name [default: name]')
            [CompletionResult]::new('--claim-email', '--claim-email', [CompletionResultType]::ParameterName, 'Claim holding the email [default: email]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON: header, claims, the identity the hub maps them to, validity and seconds until expiry')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;token;help' {
            [CompletionResult]::new('jwt', 'jwt', [CompletionResultType]::ParameterValue, 'Print a JWT for a user, signed with the configured HS256 secret or a private key')
            [CompletionResult]::new('ws', 'ws', [CompletionResultType]::ParameterValue, 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a token, verify it against the configured key, and show when it expires')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;token;help;jwt' {
            break
        }
        'rtctl;token;help;ws' {
            break
        }
        'rtctl;token;help;inspect' {
            break
        }
        'rtctl;token;help;help' {
            break
        }
        'rtctl;connect' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'The user id (`sub` claim) of a minted token')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'An organization the token''s user belongs to (`orgs` claim); repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The `name` claim')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The `email` claim')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime of a minted token, e.g. 15m, 1h, 7d')
            [CompletionResult]::new('--iss', '--iss', [CompletionResultType]::ParameterName, 'The `iss` claim, for a hub configured with an issuer')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The `aud` claim, for a hub configured with an audience')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Sign with this PEM private key instead of the HS256 secret (needs --alg)')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'Algorithm of --private-key')
            [CompletionResult]::new('--kid', '--kid', [CompletionResultType]::ParameterName, '`kid` header naming the key, for a hub that verifies with a JWKS')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Use this token instead of minting one (a JWT or a ws token)')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'Extra request header; repeat for several')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'Extra request header; repeat for several')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'Origin header to send, as a browser would')
            [CompletionResult]::new('--subprotocol', '--subprotocol', [CompletionResultType]::ParameterName, 'Subprotocol to request in Sec-WebSocket-Protocol')
            [CompletionResult]::new('-x', '-x', [CompletionResultType]::ParameterName, 'Send this message after connecting (JSON or `type key=value`); repeat for several')
            [CompletionResult]::new('--execute', '--execute', [CompletionResultType]::ParameterName, 'Send this message after connecting (JSON or `type key=value`); repeat for several')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'End the session this long after connecting: 500ms, 2s, 1m (a plain number is seconds)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'End the session when a message of this type arrives')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--staff', '--staff', [CompletionResultType]::ParameterName, 'Mint a staff token (`is_staff: true`)')
            [CompletionResult]::new('--ws-token', '--ws-token', [CompletionResultType]::ParameterName, 'Exchange the minted JWT for a single-use ws token first, as a browser would')
            [CompletionResult]::new('--raw', '--raw', [CompletionResultType]::ParameterName, 'Show frames as they arrive, without pretty-printing JSON')
            [CompletionResult]::new('--timestamps', '--timestamps', [CompletionResultType]::ParameterName, 'Prefix every line with the local time')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'No colors (NO_COLOR does the same)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Write every frame to stdout as one JSON line (the default when stdin or stdout is not a terminal)')
            [CompletionResult]::new('--no-reconnect', '--no-reconnect', [CompletionResultType]::ParameterName, 'End instead of reconnecting when the connection is lost (exit code 4)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'rtctl;notify' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'Recipient user id; repeat for several (one request, the same notification for each)')
            [CompletionResult]::new('--title', '--title', [CompletionResultType]::ParameterName, 'The notification''s title')
            [CompletionResult]::new('--message', '--message', [CompletionResultType]::ParameterName, 'The notification''s text')
            [CompletionResult]::new('--type', '--type', [CompletionResultType]::ParameterName, 'The notification type [hub default: general]')
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'Extra data, a JSON object')
            [CompletionResult]::new('--link', '--link', [CompletionResultType]::ParameterName, 'A link the client may open')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s replies as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)')
            [CompletionResult]::new('pending-user', 'pending-user', [CompletionResultType]::ParameterValue, 'Register a user awaiting approval; admins on the dashboard get `new_user`')
            [CompletionResult]::new('order', 'order', [CompletionResultType]::ParameterValue, 'Push an order status change to the admins on the dashboard')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;notify;user' {
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'Recipient user id; repeat for several (one request, the same notification for each)')
            [CompletionResult]::new('--title', '--title', [CompletionResultType]::ParameterName, 'The notification''s title')
            [CompletionResult]::new('--message', '--message', [CompletionResultType]::ParameterName, 'The notification''s text')
            [CompletionResult]::new('--type', '--type', [CompletionResultType]::ParameterName, 'The notification type [hub default: general]')
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'Extra data, a JSON object')
            [CompletionResult]::new('--link', '--link', [CompletionResultType]::ParameterName, 'A link the client may open')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Send a numbered series: "TITLE 1", "TITLE 2", ... (one request each)')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s replies as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;notify;pending-user' {
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'The user awaiting approval')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The user''s email')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The user''s display name')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s reply as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;notify;order' {
            [CompletionResult]::new('--order-id', '--order-id', [CompletionResultType]::ParameterName, 'The order whose status changed')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Its new status, e.g. paid, shipped')
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'Extra data, JSON')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s reply as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;notify;help' {
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)')
            [CompletionResult]::new('pending-user', 'pending-user', [CompletionResultType]::ParameterValue, 'Register a user awaiting approval; admins on the dashboard get `new_user`')
            [CompletionResult]::new('order', 'order', [CompletionResultType]::ParameterValue, 'Push an order status change to the admins on the dashboard')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;notify;help;user' {
            break
        }
        'rtctl;notify;help;pending-user' {
            break
        }
        'rtctl;notify;help;order' {
            break
        }
        'rtctl;notify;help;help' {
            break
        }
        'rtctl;event' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'The organization, as a flag (the same as ORG)')
            [CompletionResult]::new('--type', '--type', [CompletionResultType]::ParameterName, 'The event type, free text such as user.joined or resource.created')
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'The event''s data, JSON')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s reply as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;room' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)')
            [CompletionResult]::new('post', 'post', [CompletionResultType]::ParameterValue, 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;room;create' {
            [CompletionResult]::new('--member', '--member', [CompletionResultType]::ParameterName, 'A member''s user id; repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The room''s display name [default: its id]')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s reply as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;room;list' {
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'The user id (`sub` claim) of a minted token')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'An organization the token''s user belongs to (`orgs` claim); repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The `name` claim')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The `email` claim')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime of a minted token, e.g. 15m, 1h, 7d')
            [CompletionResult]::new('--iss', '--iss', [CompletionResultType]::ParameterName, 'The `iss` claim, for a hub configured with an issuer')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The `aud` claim, for a hub configured with an audience')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Sign with this PEM private key instead of the HS256 secret (needs --alg)')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'Algorithm of --private-key')
            [CompletionResult]::new('--kid', '--kid', [CompletionResultType]::ParameterName, '`kid` header naming the key, for a hub that verifies with a JWKS')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--staff', '--staff', [CompletionResultType]::ParameterName, 'Mint a staff token (`is_staff: true`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s reply as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'rtctl;room;post' {
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'The user id (`sub` claim) of a minted token')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'An organization the token''s user belongs to (`orgs` claim); repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The `name` claim')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The `email` claim')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime of a minted token, e.g. 15m, 1h, 7d')
            [CompletionResult]::new('--iss', '--iss', [CompletionResultType]::ParameterName, 'The `iss` claim, for a hub configured with an issuer')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The `aud` claim, for a hub configured with an audience')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Sign with this PEM private key instead of the HS256 secret (needs --alg)')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'Algorithm of --private-key')
            [CompletionResult]::new('--kid', '--kid', [CompletionResultType]::ParameterName, '`kid` header naming the key, for a hub that verifies with a JWKS')
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--staff', '--staff', [CompletionResultType]::ParameterName, 'Mint a staff token (`is_staff: true`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the hub''s reply as JSON')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'rtctl;room;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)')
            [CompletionResult]::new('post', 'post', [CompletionResultType]::ParameterValue, 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;room;help;create' {
            break
        }
        'rtctl;room;help;list' {
            break
        }
        'rtctl;room;help;post' {
            break
        }
        'rtctl;room;help;help' {
            break
        }
        'rtctl;status' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object with the three answers')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Redraw every second until Ctrl-C')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Redraw every second until Ctrl-C')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;console' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'The hub''s base URL [default: url in the config file, else the hub `rtctl serve` runs with it, else http://127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'The hub''s HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the config file)')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'The hub''s API key, for the publishing routes and the stats (default: from the config file)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose certificate a private CA signed) [default: ca_cert in the config file, else the system''s roots]')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'An organization the token''s user belongs to (`orgs` claim); repeat for several')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The `name` claim')
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'The `email` claim')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime of a minted token, e.g. 15m, 1h, 7d')
            [CompletionResult]::new('--iss', '--iss', [CompletionResultType]::ParameterName, 'The `iss` claim, for a hub configured with an issuer')
            [CompletionResult]::new('--aud', '--aud', [CompletionResultType]::ParameterName, 'The `aud` claim, for a hub configured with an audience')
            [CompletionResult]::new('--private-key', '--private-key', [CompletionResultType]::ParameterName, 'Sign with this PEM private key instead of the HS256 secret (needs --alg)')
            [CompletionResult]::new('--alg', '--alg', [CompletionResultType]::ParameterName, 'Algorithm of --private-key')
            [CompletionResult]::new('--kid', '--kid', [CompletionResultType]::ParameterName, '`kid` header naming the key, for a hub that verifies with a JWKS')
            [CompletionResult]::new('--user-id', '--user-id', [CompletionResultType]::ParameterName, 'Who the console signs in as (the token''s `sub`): whose notifications, rooms and events it shows')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('--open', '--open', [CompletionResultType]::ParameterName, 'Open the link in the browser ($BROWSER, else xdg-open, or open on macOS) as well as printing it')
            [CompletionResult]::new('--staff', '--staff', [CompletionResultType]::ParameterName, 'Mint a staff token (`is_staff: true`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'rtctl;copy-store' {
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'The SQLite database to copy (stop the hubs that write to it first) [default: database_url in the config file when it is SQLite, else sqlite://rtctl-data/rtctl.db]')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The PostgreSQL database to copy into; it must hold no rows yet (its tables are made if missing)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;completions' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;config' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the hub''s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;config;check' {
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address to listen on [default: 127.0.0.1:8000]')
            [CompletionResult]::new('--jwt-secret', '--jwt-secret', [CompletionResultType]::ParameterName, 'HS256 secret that JWTs are signed with (default: from the config file)')
            [CompletionResult]::new('--jwt-public-key', '--jwt-public-key', [CompletionResultType]::ParameterName, 'PEM public key to verify RS256/ES256 JWTs with, instead of the secret')
            [CompletionResult]::new('--jwks', '--jwks', [CompletionResultType]::ParameterName, 'JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL (an identity provider''s certs endpoint) fetched at start and kept fresh')
            [CompletionResult]::new('--jwks-refresh', '--jwks-refresh', [CompletionResultType]::ParameterName, 'With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once, at most every 10s) [default: 5m]')
            [CompletionResult]::new('--claim-user-id', '--claim-user-id', [CompletionResultType]::ParameterName, 'Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims (e.g. preferred_username,sub or user_id) [default: sub]')
            [CompletionResult]::new('--claim-staff', '--claim-staff', [CompletionResultType]::ParameterName, 'Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array holding it (e.g. realm_access.roles=admin) [default: is_staff]')
            [CompletionResult]::new('--claim-orgs', '--claim-orgs', [CompletionResultType]::ParameterName, 'Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list is tried in order (e.g. organization,groups) [default: orgs]')
            [CompletionResult]::new('--claim-name', '--claim-name', [CompletionResultType]::ParameterName, 'Claim holding the display name [default: name]')
            [CompletionResult]::new('--claim-email', '--claim-email', [CompletionResultType]::ParameterName, 'Claim holding the email [default: email]')
            [CompletionResult]::new('--jwt-issuer', '--jwt-issuer', [CompletionResultType]::ParameterName, 'Required `iss` claim')
            [CompletionResult]::new('--jwt-audience', '--jwt-audience', [CompletionResultType]::ParameterName, 'Required `aud` claim')
            [CompletionResult]::new('--api-key', '--api-key', [CompletionResultType]::ParameterName, 'Key that backends send in X-API-Key (default: from the config file)')
            [CompletionResult]::new('--allowed-origins', '--allowed-origins', [CompletionResultType]::ParameterName, 'Browser origins allowed to connect: a comma list or `*` [default: same host only]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several machines [default: sqlite://rtctl-data/rtctl.db]')
            [CompletionResult]::new('--database-pool', '--database-pool', [CompletionResultType]::ParameterName, 'Most connections this node opens to the database (PostgreSQL''s are shared by every node) [default: 8 for SQLite, 16 for PostgreSQL]')
            [CompletionResult]::new('--sqlite-synchronous', '--sqlite-synchronous', [CompletionResultType]::ParameterName, 'SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose the last commits) [default: full]')
            [CompletionResult]::new('--notification-retention', '--notification-retention', [CompletionResultType]::ParameterName, 'Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever [default: off]')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every hub node on it [default: none, one node in memory]')
            [CompletionResult]::new('--redis-prefix', '--redis-prefix', [CompletionResultType]::ParameterName, 'Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]')
            [CompletionResult]::new('--redis-frame-key', '--redis-frame-key', [CompletionResultType]::ParameterName, 'Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every node, at least 16 characters [default: from the config file, else derived from the API key]')
            [CompletionResult]::new('--node-ttl', '--node-ttl', [CompletionResultType]::ParameterName, 'With Redis: how long a node that died without closing its sockets still counts in presence (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]')
            [CompletionResult]::new('--max-frame', '--max-frame', [CompletionResultType]::ParameterName, 'Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]')
            [CompletionResult]::new('--queue', '--queue', [CompletionResultType]::ParameterName, 'Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]')
            [CompletionResult]::new('--heartbeat-interval', '--heartbeat-interval', [CompletionResultType]::ParameterName, 'Interval between server WebSocket pings [default: 20s]')
            [CompletionResult]::new('--heartbeat-timeout', '--heartbeat-timeout', [CompletionResultType]::ParameterName, 'Silence after which a connection is closed with 4000 [default: 60s]')
            [CompletionResult]::new('--send-timeout', '--send-timeout', [CompletionResultType]::ParameterName, 'Longest a client''s socket may refuse queued frames before it is closed with 4008 [default: 10s]')
            [CompletionResult]::new('--ws-token-ttl', '--ws-token-ttl', [CompletionResultType]::ParameterName, 'Lifetime of a ws token from /api/user/ws-token/ [default: 30m]')
            [CompletionResult]::new('--shutdown-timeout', '--shutdown-timeout', [CompletionResultType]::ParameterName, 'Longest a shutdown waits for sockets and requests [default: 10s]')
            [CompletionResult]::new('--message-rate', '--message-rate', [CompletionResultType]::ParameterName, 'WebSocket frames (and JWT requests) a user may send per second across their connections; above it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429; 0 turns the limits off [default: 50]')
            [CompletionResult]::new('--message-burst', '--message-burst', [CompletionResultType]::ParameterName, 'Frames (requests) that may come at once before --message-rate applies [default: 200]')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'WebSocket connections this node serves at once; more are accepted and closed with 1013 [default: what the open-file limit allows, less 64 descriptors kept for HTTP]')
            [CompletionResult]::new('--max-connections-per-user', '--max-connections-per-user', [CompletionResultType]::ParameterName, 'WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]')
            [CompletionResult]::new('--max-unauthenticated-per-ip', '--max-unauthenticated-per-ip', [CompletionResultType]::ParameterName, 'Connections from one client address that may wait for their first request at once; more get 429 [default: 64]')
            [CompletionResult]::new('--first-request-timeout', '--first-request-timeout', [CompletionResultType]::ParameterName, 'How long a new connection may take to send its first request before it is dropped [default: 5s]')
            [CompletionResult]::new('--trusted-proxies', '--trusted-proxies', [CompletionResultType]::ParameterName, 'Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; from anyone else it is ignored [default: none]')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot''s fullchain.pem); needs --tls-key. SIGHUP reloads both files')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot''s privkey.pem)')
            [CompletionResult]::new('--event-history', '--event-history', [CompletionResultType]::ParameterName, 'Pushes each org''s event stream and the dashboard keep for clients that resume after a reconnect; at most --queue [default: 1000]')
            [CompletionResult]::new('--event-retention', '--event-retention', [CompletionResultType]::ParameterName, 'How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]')
            [CompletionResult]::new('--max-body-memory', '--max-body-memory', [CompletionResultType]::ParameterName, 'Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too little left gets 503 with Retry-After [default: 64MiB]')
            [CompletionResult]::new('--console', '--console', [CompletionResultType]::ParameterName, 'Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404) [default: true]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file with the hub''s secrets; the first `rtctl serve` creates it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output: -v debug, -vv trace (RUST_LOG overrides)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'rtctl;config;help' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the hub''s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;config;help;check' {
            break
        }
        'rtctl;config;help;help' {
            break
        }
        'rtctl;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load-test fan-out latency of a hub (any hub that speaks the protocol)')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Mint a JWT, exchange it for a ws token, or inspect and verify a token')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL')
            [CompletionResult]::new('notify', 'notify', [CompletionResultType]::ParameterValue, 'Publish notifications (or, with a subcommand, pending users and order updates) through the API')
            [CompletionResult]::new('event', 'event', [CompletionResultType]::ParameterValue, 'Publish an organization event through the API')
            [CompletionResult]::new('room', 'room', [CompletionResultType]::ParameterValue, 'Chat rooms through the API: create one with its members, list a user''s, post a message')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a hub''s health, readiness and figures')
            [CompletionResult]::new('console', 'console', [CompletionResultType]::ParameterValue, 'Print (or --open) a link that signs in to the hub''s web console with a short-lived token')
            [CompletionResult]::new('copy-store', 'copy-store', [CompletionResultType]::ParameterValue, 'Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Check the hub''s configuration: `rtctl config check [SERVE FLAGS]`')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'rtctl;help;serve' {
            break
        }
        'rtctl;help;bench' {
            break
        }
        'rtctl;help;token' {
            [CompletionResult]::new('jwt', 'jwt', [CompletionResultType]::ParameterValue, 'Print a JWT for a user, signed with the configured HS256 secret or a private key')
            [CompletionResult]::new('ws', 'ws', [CompletionResultType]::ParameterValue, 'Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Decode a token, verify it against the configured key, and show when it expires')
            break
        }
        'rtctl;help;token;jwt' {
            break
        }
        'rtctl;help;token;ws' {
            break
        }
        'rtctl;help;token;inspect' {
            break
        }
        'rtctl;help;connect' {
            break
        }
        'rtctl;help;notify' {
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Store and push a notification to users (the default: `rtctl notify --user-id ...`)')
            [CompletionResult]::new('pending-user', 'pending-user', [CompletionResultType]::ParameterValue, 'Register a user awaiting approval; admins on the dashboard get `new_user`')
            [CompletionResult]::new('order', 'order', [CompletionResultType]::ParameterValue, 'Push an order status change to the admins on the dashboard')
            break
        }
        'rtctl;help;notify;user' {
            break
        }
        'rtctl;help;notify;pending-user' {
            break
        }
        'rtctl;help;notify;order' {
            break
        }
        'rtctl;help;event' {
            break
        }
        'rtctl;help;room' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a room with its members (POST /api/v1/chat/rooms, with the API key)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the rooms a user may enter, latest activity first (GET /api/v1/chat/rooms, as that user)')
            [CompletionResult]::new('post', 'post', [CompletionResultType]::ParameterValue, 'Post a message to a room as a member (POST /api/v1/chat/rooms/ROOM/messages)')
            break
        }
        'rtctl;help;room;create' {
            break
        }
        'rtctl;help;room;list' {
            break
        }
        'rtctl;help;room;post' {
            break
        }
        'rtctl;help;status' {
            break
        }
        'rtctl;help;console' {
            break
        }
        'rtctl;help;copy-store' {
            break
        }
        'rtctl;help;completions' {
            break
        }
        'rtctl;help;config' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the hub''s settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and print the effective settings with secrets masked; exits 1 naming the setting that is wrong')
            break
        }
        'rtctl;help;config;check' {
            break
        }
        'rtctl;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
