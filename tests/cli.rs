//! The `kommutator` binary: commands, config errors, first start, graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kommutator"));
    c.env_remove("KOMMUTATOR_CONFIG").env("RUST_LOG", "info");
    c
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kommutator-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("kommutator.toml");
    std::fs::write(
        &p,
        format!(
            "[database]\nurl = \"sqlite://{}/k.db\"\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn check_config_names_a_misspelled_key() {
    let dir = temp_dir("typo");
    let p = config(&dir, "[server]\nlisen = \"127.0.0.1:1\"\n");
    let out = bin()
        .arg("--config")
        .arg(&p)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen"), "{err}");

    let out = bin()
        .arg("check-config")
        .env("KOMMUTATOR_SERVER__LISTN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));

    let out = bin()
        .arg("--config")
        .arg(config(&dir, ""))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secrets_stay_out_of_output() {
    let dir = temp_dir("secret");
    let out = bin()
        .current_dir(&dir)
        .args(["check-config"])
        .env(
            "KOMMUTATOR_DATABASE__URL",
            "postgres://kom:TopSecret42@127.0.0.1:1/kom",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("TopSecret42") && all.contains("kom:***@"),
        "{all}"
    );
    // A failing connection names the database without its password.
    let out = bin()
        .current_dir(&dir)
        .args(["migrate"])
        .env(
            "KOMMUTATOR_DATABASE__URL",
            "postgres://kom:TopSecret42@127.0.0.1:1/kom",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("TopSecret42") && all.contains("cannot open the database"),
        "{all}"
    );
}

#[test]
fn migrate_user_add_and_apikey_create() {
    let dir = temp_dir("admin");
    let p = config(&dir, "");
    let out = bin()
        .arg("--config")
        .arg(&p)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("k.db").exists());
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args([
            "user",
            "add",
            "--login",
            "olga",
            "--name",
            "Ольга",
            "--role",
            "supervisor",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("one-time password: "), "{stdout}");
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args([
            "user", "add", "--login", "olga", "--name", "x", "--role", "manager",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a taken login fails");
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args([
            "user", "add", "--login", "x", "--name", "x", "--role", "boss",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects an unknown role");
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args([
            "apikey",
            "create",
            "--name",
            "pbx",
            "--scope",
            "calls:write",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("secret (shown once): kk_"),
        "{stdout}"
    );
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args(["apikey", "create", "--name", "pbx", "--scope", "everything"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_with_no_config_then_stop_on_sigterm() {
    let dir = temp_dir("serve");
    let mut child = bin()
        .current_dir(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password = None;
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = Some(p.to_owned());
        }
        if let Some(a) = line.strip_prefix("Kommutator listening on ") {
            addr = Some(a.trim().to_owned());
            break;
        }
    }
    let (password, addr) = (
        password.expect("first admin password printed"),
        addr.expect("address printed"),
    );
    assert!(
        dir.join("data/kommutator.db").exists(),
        "SQLite under ./data"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{addr}/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["user"]["must_change_password"], true);
    });

    let started = Instant::now();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "clean exit on SIGTERM: {s:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A second start finds the admin and prints no password.
    let mut child = bin()
        .current_dir(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut saw_password = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        saw_password |= line.contains("password:");
        if line.starts_with("Kommutator listening on ") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!saw_password, "the one-time password is shown once");
}
