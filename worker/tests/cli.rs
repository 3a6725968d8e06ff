//! `worker --help` and `--version` print and exit 0 without starting a worker (no migration,
//! no generated keys, no database).

use std::process::Command;

fn worker(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    command
}

#[test]
fn help_and_version_print_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let help = worker(dir.path()).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Usage: worker") && text.contains("Exit codes"),
        "{text}"
    );
    for (name, _, _) in tributary_worker::variables::VARIABLES {
        assert!(text.contains(name), "{name} missing from --help");
    }
    let version = worker(dir.path()).arg("-V").output().unwrap();
    assert_eq!(version.status.code(), Some(0));
    assert!(
        String::from_utf8(version.stdout)
            .unwrap()
            .starts_with("worker ")
    );
    let wrong = worker(dir.path()).arg("--concurrency=4").output().unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
