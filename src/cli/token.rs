//! `rtctl token`'s flags, and [`MintArgs`], the flags of a minted JWT that `connect` shares.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `token`'s flags: the secret every subcommand signs or verifies with; only `ws` calls the hub (its
/// `--url`), and none of them uses the API key.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The hub's HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the
    /// config file)
    #[arg(
        long,
        global = true,
        env = "RTCTL_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Hub"
    )]
    pub jwt_secret: Option<String>,

    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a JWT for a user, signed with the configured HS256 secret or a private key
    Jwt(JwtArgs),
    /// Mint a JWT and exchange it at GET /api/user/ws-token/ for a single-use ws token
    Ws(WsArgs),
    /// Decode a token, verify it against the configured key, and show when it expires
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct JwtArgs {
    #[command(flatten)]
    pub mint: MintArgs,

    /// Print JSON (the token with its claims) instead of the bare token
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsArgs {
    #[command(flatten)]
    pub jwt: JwtArgs,

    /// The hub's base URL [default: url in the config file, else the hub `rtctl serve` runs with it,
    /// else http://127.0.0.1:8000]
    #[arg(long, env = "RTCTL_URL", value_name = "URL", help_heading = "Hub")]
    pub url: Option<String>,

    /// Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the
    /// config file, else the system's roots]
    #[arg(long, env = "RTCTL_CA_CERT", value_name = "PEM_FILE", help_heading = "Hub")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// Who a minted JWT names and how it is signed; shared by `token` and `connect`.
#[derive(Debug, Clone, Args)]
pub struct MintArgs {
    /// The user id (`sub` claim) of a minted token
    #[arg(long, env = "RTCTL_USER_ID", value_name = "ID")]
    pub user_id: Option<String>,

    /// Mint a staff token (`is_staff: true`)
    #[arg(long)]
    pub staff: bool,

    /// An organization the token's user belongs to (`orgs` claim); repeat for several
    #[arg(long = "org", value_name = "ORG")]
    pub orgs: Vec<String>,

    /// The `name` claim
    #[arg(long)]
    pub name: Option<String>,

    /// The `email` claim
    #[arg(long)]
    pub email: Option<String>,

    /// Lifetime of a minted token, e.g. 15m, 1h, 7d
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub ttl: String,

    /// The `iss` claim, for a hub configured with an issuer
    #[arg(long, value_name = "ISSUER")]
    pub iss: Option<String>,

    /// The `aud` claim, for a hub configured with an audience
    #[arg(long, value_name = "AUDIENCE")]
    pub aud: Option<String>,

    /// Sign with this PEM private key instead of the HS256 secret (needs --alg)
    #[arg(long, env = "RTCTL_PRIVATE_KEY", value_name = "PEM_FILE", requires = "alg")]
    pub private_key: Option<PathBuf>,

    /// Algorithm of --private-key
    #[arg(long, value_enum, ignore_case = true, requires = "private_key")]
    pub alg: Option<KeyAlg>,

    /// `kid` header naming the key, for a hub that verifies with a JWKS
    #[arg(long)]
    pub kid: Option<String>,
}

/// The asymmetric algorithms a minted JWT may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlg {
    /// RSA with SHA-256
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256
    #[value(name = "ES256")]
    Es256,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token to inspect (`-` reads it from stdin)
    pub token: String,

    /// Verify with this PEM public key instead of the HS256 secret
    #[arg(long, value_name = "PEM_FILE", conflicts_with = "jwks")]
    pub public_key: Option<PathBuf>,

    /// Verify with this JWKS file (the key chosen by the token's kid)
    #[arg(long, value_name = "JSON_FILE")]
    pub jwks: Option<PathBuf>,

    /// Print JSON: header, claims, the identity the hub maps them to, validity and seconds until expiry
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub claims: super::claims::ClaimArgs,
}
