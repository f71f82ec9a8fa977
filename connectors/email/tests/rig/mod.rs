//! A real mail system for tests: a private Dovecot (IMAP + LMTP) and a private Postfix
//! (SMTP on a free loopback port, delivering the domain `example.test` to Dovecot's LMTP),
//! both in a scratch folder, stopped on drop.
//!
//! Users `support@example.test` and `customer@example.test`, password `pass`.
//!
//! It needs root (Dovecot's login processes run as `dovenull`, mail as `dovecot`,
//! Postfix drops to `postfix`) and the Debian packages `dovecot-imapd dovecot-lmtpd
//! postfix`. Without them [`MailRig::start`] prints why and returns `None`, unless the
//! environment variable `CI` is set: then it panics, so CI never passes by skipping.
//!
//! Include it from another crate's tests with
//! `#[path = "../connectors/email/tests/rig/mod.rs"] mod rig;` (it needs `async-imap`
//! with `runtime-tokio`, `futures-util` and `tokio` as dev-dependencies).
//!
//! Set `KOMMUTATOR_KEEP_MAILRIG=1` to keep the scratch folder after the test.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The password of every rig user.
pub const PASSWORD: &str = "pass";
/// The hub's mailbox.
pub const SUPPORT: &str = "support@example.test";
/// The customer's mailbox.
pub const CUSTOMER: &str = "customer@example.test";

const BINARIES: [&str; 5] = [
    "/usr/sbin/dovecot",
    "/usr/lib/dovecot/imap",
    "/usr/lib/dovecot/lmtp",
    "/usr/sbin/postfix",
    "/usr/lib/postfix/sbin/master",
];

/// A running Dovecot + Postfix pair.
#[derive(Debug)]
pub struct MailRig {
    dir: PathBuf,
    imap_port: u16,
    lmtp_port: u16,
    smtp_port: u16,
    dovecot_started: bool,
    postfix_started: bool,
}

fn skip(reason: &str) -> Option<MailRig> {
    if std::env::var_os("CI").is_some() {
        panic!("mail rig unavailable on CI: {reason}");
    }
    eprintln!("SKIPPED: mail rig unavailable: {reason}");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// uid and gid of a system user, from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        let _pw = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn wait_for_port(port: u16, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if StdTcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn chown_r(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for e in fs::read_dir(path)? {
            chown_r(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl MailRig {
    /// Starts both servers in a fresh scratch folder; `None` (with the reason printed)
    /// when this machine cannot run them, a panic instead when `CI` is set.
    pub fn start() -> Option<MailRig> {
        if let Some(missing) = BINARIES.iter().find(|b| !Path::new(b).exists()) {
            return skip(&format!(
                "{missing} is missing (apt-get install dovecot-imapd dovecot-lmtpd postfix)"
            ));
        }
        if !is_root() {
            return skip("the rig runs Dovecot and Postfix privately and needs root");
        }
        let (Some((dove_uid, dove_gid)), Some((pf_uid, pf_gid))) =
            (user_ids("dovecot"), user_ids("postfix"))
        else {
            return skip("the system users dovecot and postfix are missing");
        };

        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = traversable_temp_dir().join(format!(
            "kommutator-mailrig-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let mut rig = MailRig {
            dir: dir.clone(),
            imap_port: free_port(),
            lmtp_port: free_port(),
            smtp_port: free_port(),
            dovecot_started: false,
            postfix_started: false,
        };
        for sub in [
            "run",
            "mail",
            "postfix/conf",
            "postfix/queue",
            "postfix/data",
        ] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Dovecot's unprivileged processes must reach the config and the mail.
        for sub in ["", "postfix", "postfix/conf"] {
            fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
        }
        rig.write_dovecot(dove_uid, dove_gid);
        chown_r(&dir.join("mail"), dove_uid, dove_gid).unwrap();
        let start_log = fs::File::create(dir.join("dovecot-start.log")).unwrap();
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(start_log.try_clone().unwrap())
            .stderr(start_log)
            .status()
            .expect("run dovecot");
        if !status.success() {
            panic!("dovecot did not start ({status})\n{}", rig.logs());
        }
        rig.dovecot_started = true;
        if !wait_for_port(rig.imap_port, Duration::from_secs(20))
            || !wait_for_port(rig.lmtp_port, Duration::from_secs(20))
        {
            panic!("dovecot is not listening\n{}", rig.logs());
        }

        rig.write_postfix();
        std::os::unix::fs::chown(dir.join("postfix/data"), Some(pf_uid), Some(pf_gid)).unwrap();
        // Not `output()`: the master daemon inherits the pipes and never closes them.
        let start_log = fs::File::create(dir.join("postfix/start.log")).unwrap();
        let status = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(dir.join("postfix/conf"))
            .arg("start")
            .stdin(Stdio::null())
            .stdout(start_log.try_clone().unwrap())
            .stderr(start_log)
            .status()
            .expect("run postfix");
        rig.postfix_started = true;
        if !status.success() || !wait_for_port(rig.smtp_port, Duration::from_secs(30)) {
            panic!("postfix did not start ({status})\n{}", rig.logs());
        }
        Some(rig)
    }

    fn write_dovecot(&self, uid: u32, gid: u32) {
        let d = self.dir.display();
        let users: String = [SUPPORT, CUSTOMER]
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{d}/mail/{u}\n"))
            .collect();
        fs::write(self.dir.join("users"), users).unwrap();
        let conf = format!(
            r#"protocols = imap lmtp
listen = 127.0.0.1
base_dir = {d}/run
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
first_valid_uid = 100
default_login_user = dovenull
default_internal_user = dovecot
log_path = {d}/dovecot.log
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"#,
            imap = self.imap_port,
            lmtp = self.lmtp_port,
        );
        fs::write(self.dir.join("dovecot.conf"), conf).unwrap();
    }

    fn write_postfix(&self) {
        let p = self.dir.join("postfix");
        let pd = p.display();
        let main = format!(
            r#"compatibility_level = 3.6
queue_directory = {pd}/queue
data_directory = {pd}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
mynetworks = 192.0.2.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.test
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
maillog_file_prefixes = /tmp, /var, {pd}
maillog_file = {pd}/postfix.log
smtputf8_enable = no
biff = no
message_size_limit = 52428800
"#,
            lmtp = self.lmtp_port
        );
        fs::write(p.join("conf/main.cf"), main).unwrap();
        // Only the SMTP listener on our port, no chroot, no local/pipe delivery.
        let mut master = format!("127.0.0.1:{} inet n - n - - smtpd\n", self.smtp_port);
        for line in [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ] {
            master.push_str(line);
            master.push('\n');
        }
        fs::write(p.join("conf/master.cf"), master).unwrap();
    }

    /// The IMAP port (plain, no TLS) on 127.0.0.1.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The SMTP port (plain, no AUTH; relays only to `example.test`) on 127.0.0.1.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The scratch folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Both servers' logs.
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| {
            fs::read_to_string(&p).unwrap_or_else(|e| format!("({}: {e})", p.display()))
        };
        format!(
            "--- dovecot.log ---\n{}{}\n--- postfix.log ---\n{}{}",
            read(self.dir.join("dovecot-start.log")),
            read(self.dir.join("dovecot.log")),
            read(self.dir.join("postfix/start.log")),
            read(self.dir.join("postfix/postfix.log"))
        )
    }

    /// Delivers `raw` into `to`'s INBOX through Dovecot's LMTP; returns once it is
    /// stored. Bare LF line ends become CRLF; dot-stuffing is done here.
    pub async fn deliver(&self, raw: &[u8], to: &str) {
        let stream = TcpStream::connect(("127.0.0.1", self.lmtp_port))
            .await
            .expect("connect lmtp");
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).await.expect("read lmtp");
                all.push_str(&line);
                if line.len() < 4 || line.as_bytes().get(3) != Some(&b'-') {
                    return all;
                }
            }
        }
        let greet = reply(&mut r).await;
        assert!(greet.starts_with("220"), "lmtp greeting: {greet}");
        for (cmd, want) in [
            ("LHLO rig.example.test".to_owned(), "250"),
            ("MAIL FROM:<rig@example.test>".to_owned(), "250"),
            (format!("RCPT TO:<{to}>"), "250"),
            ("DATA".to_owned(), "354"),
        ] {
            w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
            let got = reply(&mut r).await;
            assert!(got.starts_with(want), "lmtp {cmd}: {got}");
        }
        let mut data = Vec::with_capacity(raw.len() + 1024);
        for line in raw.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        w.write_all(&data).await.unwrap();
        let got = reply(&mut r).await;
        assert!(got.starts_with("250"), "lmtp data: {got}\n{}", self.logs());
        let _ = w.write_all(b"QUIT\r\n").await;
    }

    /// Every message in `user`'s `mailbox`, oldest first (empty when the mailbox does
    /// not exist).
    pub async fn fetch_all(&self, user: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let tcp = TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .expect("connect imap");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .unwrap()
            .expect("imap greeting");
        let mut session = client
            .login(user, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .expect("imap login");
        let Ok(mb) = session.select(mailbox).await else {
            let _ = session.logout().await;
            return Vec::new();
        };
        let mut out = Vec::new();
        if mb.exists > 0 {
            let fetches: Vec<_> = session
                .uid_fetch("1:*", "(UID BODY.PEEK[])")
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let mut fetches: Vec<_> = fetches
                .iter()
                .filter_map(|f| Some((f.uid?, f.body()?.to_vec())))
                .collect();
            fetches.sort_by_key(|(uid, _)| *uid);
            out = fetches.into_iter().map(|(_, b)| b).collect();
        }
        let _ = session.logout().await;
        out
    }

    /// Polls `fetch_all` until a message containing `needle` shows up, up to `deadline`.
    pub async fn wait_for(
        &self,
        user: &str,
        mailbox: &str,
        needle: &str,
        deadline: Duration,
    ) -> Vec<u8> {
        let end = Instant::now() + deadline;
        loop {
            let all = self.fetch_all(user, mailbox).await;
            if let Some(m) = all
                .into_iter()
                .find(|m| String::from_utf8_lossy(m).contains(needle))
            {
                return m;
            }
            assert!(
                Instant::now() < end,
                "no mail with {needle:?} in {user}/{mailbox}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MailRig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("mail rig in {}:\n{}", self.dir.display(), self.logs());
        }
        if self.postfix_started {
            let _ = Command::new("/usr/sbin/postfix")
                .arg("-c")
                .arg(self.dir.join("postfix/conf"))
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if self.dovecot_started {
            let _ = Command::new("/usr/sbin/dovecot")
                .arg("-c")
                .arg(self.dir.join("dovecot.conf"))
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Let both masters go before the folder does.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end
            && (StdTcpStream::connect(("127.0.0.1", self.smtp_port)).is_ok()
                || StdTcpStream::connect(("127.0.0.1", self.imap_port)).is_ok())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::env::var_os("KOMMUTATOR_KEEP_MAILRIG").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The temporary folder, or `/tmp` when some folder above it is closed to
/// other users: Dovecot and Postfix drop to their own users and must reach
/// the rig's files (a CI run's private `TMPDIR` is typically mode 0700).
fn traversable_temp_dir() -> PathBuf {
    let temp = std::env::temp_dir();
    let open_to_all = temp.ancestors().all(|dir| {
        std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    });
    if open_to_all {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}
