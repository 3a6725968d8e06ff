//! The `api` command line: `--help` and `--version` print and exit 0 without starting anything,
//! a mistyped command says so and exits 2, and `api openapi | head` ends quietly.

use std::io::Read;
use std::process::{Command, Stdio};

fn api(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    command
}

#[test]
fn help_and_version_print_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let help = api(dir.path()).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    for expected in ["serve", "migrate", "rotate-keys", "openapi", "Exit codes"] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // Every variable with its default.
    for (name, default, _) in tributary_worker::variables::VARIABLES {
        assert!(
            text.contains(name) && text.contains(&format!("[default: {default}]")),
            "{name} missing from --help"
        );
    }
    let version = api(dir.path()).arg("--version").output().unwrap();
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("api {}", env!("CARGO_PKG_VERSION"))
    );
    let sub = api(dir.path())
        .args(["migrate", "--help"])
        .output()
        .unwrap();
    assert_eq!(sub.status.code(), Some(0));
    // Nothing was started: no data directory, no generated keys, no database.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_mistyped_command_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = api(dir.path()).arg("servee").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unrecognized subcommand 'servee'"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_document_can_be_piped_into_a_reader_that_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = api(dir.path())
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("openapi"));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
