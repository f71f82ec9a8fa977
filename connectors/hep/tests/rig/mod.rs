//! The real rig of research note `anchors-telephony.md` §3.4, shared by the connector's
//! `tests/kamailio_rig.rs` and the hub's `tests/api/sip_rig.rs` (included there with
//! `#[path]`, so this module uses only std and tokio): Kamailio mirrors every SIP message
//! it handles as HEPv3 (`siptrace`, `trace_mode 1`) to a collector port, and two baresip
//! user agents place calls through it on command.
//!
//! Needs the Debian packages `kamailio` and `baresip-core`. Without them [`Rig::start`]
//! says so and returns `None`, except under CI (env `CI` set), where it panics. Everything
//! runs on 127.0.0.1 ports picked free at start, in a temp folder removed at the end; the
//! processes it starts are stopped by their pid when the [`Rig`] is dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const KAMAILIO: &str = "/usr/sbin/kamailio";
const BARESIP: &str = "/usr/bin/baresip";
const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

/// The callee's user (and extension): `sip:2001@127.0.0.1`.
pub const CALLEE: &str = "2001";
/// The caller's user in the connector's own test: an extension too (`sip:1001@…`).
pub const CALLER: &str = "1001";

fn kamailio_modules() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .collect();
    candidates.push(PathBuf::from("/usr/lib/kamailio/modules"));
    candidates
        .into_iter()
        .find(|p| p.join("siptrace.so").exists())
}

/// The binaries and module folders, or why they are missing.
fn tools() -> Result<PathBuf, String> {
    let mut missing = Vec::new();
    if !Path::new(KAMAILIO).exists() {
        missing.push(KAMAILIO.to_owned());
    }
    if !Path::new(BARESIP).exists() {
        missing.push(BARESIP.to_owned());
    }
    if !Path::new(BARESIP_MODULES).join("ctrl_tcp.so").exists() {
        missing.push(format!("{BARESIP_MODULES}/ctrl_tcp.so"));
    }
    let modules = kamailio_modules();
    if modules.is_none() {
        missing.push("kamailio/modules/siptrace.so".to_owned());
    }
    match modules {
        Some(m) if missing.is_empty() => Ok(m),
        _ => Err(missing.join(", ")),
    }
}

/// A port free on 127.0.0.1 for both UDP and TCP (baresip binds both).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process stopped by its pid (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { name, child, log }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} did not stop on SIGTERM; killed", self.name);
    }
}

fn kamailio_cfg(modules: &Path, sip_port: u16, hep_port: u16, callee_port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{sip_port}

mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "siptrace.so"

modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:{hep_port}")
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "hep_version", 3)
modparam("siptrace", "hep_capture_id", 2001)
modparam("siptrace", "trace_to_database", 0)
modparam("siptrace", "trace_on", 1)
modparam("siptrace", "trace_mode", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (!loose_route()) {{
            $du = "sip:127.0.0.1:{callee_port}";
        }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    if (is_method("INVITE|SUBSCRIBE")) {{
        record_route();
    }}
    $du = "sip:127.0.0.1:{callee_port}";
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"#,
        modules = modules.display()
    )
}

/// 8 kHz mono 16-bit silence: `ausine` only does 48 kHz and aborts PCMU calls.
fn silence_wav(path: &Path) {
    let samples = 8000u32 * 2;
    let data_len = samples * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.resize(w.len() + data_len as usize, 0);
    std::fs::write(path, w).unwrap();
}

/// How to reach one agent's `ctrl_tcp`; cheap to clone into a blocking task.
#[derive(Debug, Clone)]
struct Ctrl {
    name: &'static str,
    port: u16,
    log: PathBuf,
}

impl Ctrl {
    /// Sends one ctrl_tcp command (netstring-framed JSON) and reads the reply, so the
    /// command is done before the next step.
    fn try_command(&self, command: &str, params: &str) -> std::io::Result<()> {
        let body = format!(r#"{{"command":"{command}","params":"{params}","token":"t"}}"#);
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.write_all(format!("{}:{body},", body.len()).as_bytes())?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        Ok(())
    }

    fn command(&self, command: &str, params: &str) {
        if let Err(e) = self.try_command(command, params) {
            panic!("{} ctrl_tcp: {e}\n{}", self.name, log_tail(&self.log));
        }
    }

    fn wait_ready(&self) {
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not start:\n{}", self.name, log_tail(&self.log));
    }

    /// [`command`](Self::command) off the async runtime's threads.
    async fn send(&self, command: &'static str, params: String) {
        let ctrl = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || ctrl.command(command, &params)).await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[derive(Debug)]
struct Agent {
    ctrl: Ctrl,
    proc: Proc,
}

fn baresip(
    dir: &Path,
    name: &'static str,
    aor: &str,
    sip_port: u16,
    kam_port: u16,
    wav: &Path,
) -> Agent {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let ctrl_port = free_port();
    let config = format!(
        "poll_method epoll\n\
         sip_listen 127.0.0.1:{sip_port}\n\
         sip_transports udp\n\
         audio_player aufile,{rx}\n\
         audio_source aufile,{wav}\n\
         audio_alert aufile,/dev/null\n\
         module_path {BARESIP_MODULES}\n\
         module g711.so\n\
         module aufile.so\n\
         module menu.so\n\
         module account.so\n\
         module ctrl_tcp.so\n\
         module_app menu.so\n\
         ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n",
        rx = home.join("rx.wav").display(),
        wav = wav.display(),
    );
    std::fs::write(home.join("config"), config).unwrap();
    // regint=0: no REGISTER, Kamailio needs no registrar. answermode=manual: the test
    // answers, cancels or rejects through ctrl_tcp.
    std::fs::write(
        home.join("accounts"),
        format!("<{aor}>;regint=0;answermode=manual;outbound=\"sip:127.0.0.1:{kam_port}\"\n"),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let proc = Proc::spawn(
        name,
        Command::new(BARESIP).arg("-f").arg(&home),
        log.clone(),
    );
    Agent {
        ctrl: Ctrl {
            name,
            port: ctrl_port,
            log,
        },
        proc,
    }
}

/// The rig's temp folder, removed when dropped (after the processes, declared before it).
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kamailio mirroring to a HEP port, and two baresip agents: the caller (user chosen at
/// start) and the callee [`CALLEE`]. Dropping it quits the agents and stops every process.
#[derive(Debug)]
pub struct Rig {
    // Dropped in this order: the agents, then Kamailio, then the folder.
    caller: Agent,
    callee: Agent,
    kamailio: Proc,
    kam_port: u16,
    dir: TempDir,
}

static RIGS: AtomicU32 = AtomicU32::new(0);

impl Rig {
    /// Starts Kamailio (mirroring HEPv3 to `127.0.0.1:{hep_port}`) and the agents, the
    /// caller as `sip:{caller_user}@127.0.0.1`, and waits until they are up (about 1 s).
    ///
    /// `None` when the binaries are missing (after printing `SKIPPED {label}: …`); under
    /// CI (env `CI` set) it panics instead.
    pub async fn start(label: &str, hep_port: u16, caller_user: &str) -> Option<Rig> {
        let modules = match tools() {
            Ok(m) => m,
            Err(missing) => {
                if std::env::var_os("CI").is_some() {
                    panic!(
                        "{label}: missing {missing}: install kamailio and baresip \
                         (apt-get install -y kamailio baresip-core)"
                    );
                }
                eprintln!(
                    "SKIPPED {label}: missing {missing}; install kamailio and baresip \
                     (apt-get install -y kamailio baresip-core) to run it"
                );
                return None;
            }
        };
        let caller_user = caller_user.to_owned();
        match tokio::task::spawn_blocking(move || {
            Self::start_blocking(&modules, hep_port, &caller_user)
        })
        .await
        {
            Ok(rig) => Some(rig),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    fn start_blocking(modules: &Path, hep_port: u16, caller_user: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!(
            "kommutator-hep-rig-{}-{}",
            std::process::id(),
            RIGS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);

        let kam_port = free_port();
        let caller_port = free_port();
        let callee_port = free_port();
        let cfg = dir.0.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_cfg(modules, kam_port, hep_port, callee_port)).unwrap();
        let check = Command::new(KAMAILIO)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "kamailio -c rejected the config:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let kamailio = Proc::spawn(
            "kamailio",
            Command::new(KAMAILIO)
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-P"])
                .arg(dir.0.join("kamailio.pid"))
                .arg("-w")
                .arg(&dir.0),
            dir.0.join("kamailio.log"),
        );
        let wav = dir.0.join("silence8k.wav");
        silence_wav(&wav);
        let callee = baresip(
            &dir.0,
            "callee",
            &format!("sip:{CALLEE}@127.0.0.1"),
            callee_port,
            kam_port,
            &wav,
        );
        let caller = baresip(
            &dir.0,
            "caller",
            &format!("sip:{caller_user}@127.0.0.1"),
            caller_port,
            kam_port,
            &wav,
        );
        callee.ctrl.wait_ready();
        caller.ctrl.wait_ready();
        // Kamailio binds before it forks its workers; give it the same head start.
        for _ in 0..100 {
            if UdpSocket::bind(("127.0.0.1", kam_port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Rig {
            caller,
            callee,
            kamailio,
            kam_port,
            dir,
        }
    }

    /// The caller dials the callee through Kamailio.
    pub async fn dial(&self) {
        let target = format!("sip:{CALLEE}@127.0.0.1:{}", self.kam_port);
        self.caller.ctrl.send("dial", target).await;
    }

    /// The callee answers the call ringing at it.
    pub async fn answer(&self) {
        self.callee.ctrl.send("accept", String::new()).await;
    }

    /// The caller hangs up: a BYE once answered, a CANCEL while it rings.
    pub async fn caller_hangup(&self) {
        self.caller.ctrl.send("hangup", String::new()).await;
    }

    /// The callee rejects the ringing call (baresip answers 486 Busy Here).
    pub async fn reject(&self) {
        self.callee.ctrl.send("hangup", String::new()).await;
    }

    /// The last lines of each process's log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- kamailio\n{}\n--- caller\n{}\n--- callee\n{}",
            log_tail(&self.kamailio.log),
            log_tail(&self.caller.proc.log),
            log_tail(&self.callee.proc.log),
        )
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Best effort: the processes are stopped by pid right after anyway.
        let _ = self.caller.ctrl.try_command("quit", "");
        let _ = self.callee.ctrl.try_command("quit", "");
    }
}
