//! A real SMTP server on loopback for the email tests: Python's aiosmtpd
//! writing every message into a maildir, parsed back with Python's email
//! package (transfer encodings included).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(crate::harness::unique("kura-maildir"));
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { child, port, dir }
    }

    /// Every message received so far, decoded.
    pub fn messages(&self) -> Vec<Mail> {
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import email, json, mailbox, sys\n\
                 box = mailbox.Maildir(sys.argv[1], create=False)\n\
                 out = []\n\
                 for key in sorted(box.keys()):\n\
                 \tm = email.message_from_bytes(box.get_bytes(key))\n\
                 \tsubject = str(email.header.make_header(email.header.decode_header(m['Subject'])))\n\
                 \tout.append({'to': m['To'], 'subject': subject, 'body': m.get_payload(decode=True).decode(m.get_content_charset() or 'utf-8')})\n\
                 print(json.dumps(out))\n",
            )
            .arg(&self.dir)
            .output()
            .expect("read the maildir");
        if !out.status.success() {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|m| Mail {
                        to: m["to"].as_str().unwrap_or("").to_string(),
                        subject: m["subject"].as_str().unwrap_or("").to_string(),
                        body: m["body"].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait (bounded) for a message to `to` whose subject contains `what`.
    pub async fn wait_for(&self, to: &str, what: &str) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self
                .messages()
                .into_iter()
                .find(|m| m.to.contains(to) && m.subject.contains(what))
            {
                return m;
            }
            assert!(Instant::now() < deadline, "no email '{what}' to {to}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
