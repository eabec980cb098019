//! Claim mapping flags, shared by `rtctl serve` (how the hub maps tokens) and `rtctl token inspect` (to
//! show how it would).

use clap::Args;

/// Where the identity comes from in a token's claims. Each also from `RTCTL_<NAME>` or the config file.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Claim mapping")]
pub struct ClaimArgs {
    /// Claim holding the user id; a comma list is tried in order, dotted paths reach into nested claims
    /// (e.g. preferred_username,sub or user_id) [default: sub]
    #[arg(long, env = "RTCTL_CLAIM_USER_ID", value_name = "PATHS")]
    pub claim_user_id: Option<String>,

    /// Boolean claim that makes a user staff, or PATH=VALUE: staff when the claim is VALUE or an array
    /// holding it (e.g. realm_access.roles=admin) [default: is_staff]
    #[arg(long, env = "RTCTL_CLAIM_STAFF", value_name = "PATH[=VALUE]")]
    pub claim_staff: Option<String>,

    /// Claim holding the organizations (an array of ids, or an object whose keys are ids); a comma list
    /// is tried in order (e.g. organization,groups) [default: orgs]
    #[arg(long, env = "RTCTL_CLAIM_ORGS", value_name = "PATHS")]
    pub claim_orgs: Option<String>,

    /// Claim holding the display name [default: name]
    #[arg(long, env = "RTCTL_CLAIM_NAME", value_name = "PATH")]
    pub claim_name: Option<String>,

    /// Claim holding the email [default: email]
    #[arg(long, env = "RTCTL_CLAIM_EMAIL", value_name = "PATH")]
    pub claim_email: Option<String>,
}
