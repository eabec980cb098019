//! `rtctl config check` (issue 20): the hub's settings resolved as `rtctl serve` would, printed with
//! secrets masked, and a wrong one named with exit 1.

use std::process::Stdio;

use tempfile::TempDir;

use crate::util::TIMEOUT;

/// Runs `rtctl config check ARGS` in `dir` with no RTCTL_* from the environment.
async fn check(dir: &TempDir, args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir.path()).env("NO_COLOR", "1").env_remove("RUST_LOG").stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.args(["config", "check"]).args(args);
    let out = tokio::time::timeout(TIMEOUT, command.output()).await.expect("in time").expect("rtctl ran");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Valid settings print with the JWT secret, the API key and the database password masked; a flag wins
/// over the file; a wrong setting exits 1 naming it; no config file is created.
#[tokio::test]
async fn config_check_masks_secrets_and_names_the_wrong_setting() {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(
        dir.path().join("rtctl.toml"),
        "jwt_secret = \"jwt-secret-value-0123456789\"\napi_key = \"api-key-value-0123456789\"\nqueue = 64\n",
    )
    .expect("write the config");
    let (code, out, err) =
        check(&dir, &["--database-url", "postgres://hub:db-pass-0123@db.example/rtctl", "--queue", "2048"]).await;
    assert_eq!(code, 0, "{err}");
    for secret in ["jwt-secret-value-0123456789", "api-key-value-0123456789", "db-pass-0123"] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert!(out.contains("postgres://***@db.example/rtctl"), "{out}");
    assert!(out.contains("queue: 2048"), "the flag wins: {out}");
    assert!(out.ends_with("ok: the settings are valid\n"), "{out}");

    let (code, _, err) = check(&dir, &["--max-frame", "512"]).await;
    assert_eq!((code, err.as_str()), (1, "rtctl: invalid max_frame 512: must be between 1KiB and 16MiB\n"));

    let empty = TempDir::new().expect("temp dir");
    let (code, _, err) = check(&empty, &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("does not exist") && err.contains("no JWT key configured"), "{err}");
    assert!(!empty.path().join("rtctl.toml").exists(), "a check creates no file");
}
