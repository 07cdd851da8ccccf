//! What the `paygate` binary writes to its log when stderr is a file: plain text without
//! terminal colour codes, one line per event whatever a client sends, or JSON on request.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::reliability::eventually;

/// A `paygate serve` whose stderr goes to a file; killed on drop.
struct LoggingGateway {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LoggingGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LoggingGateway {
    async fn start(env: &[(&str, &str)]) -> LoggingGateway {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("paygate.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_paygate"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .env_remove("PAYGATE_LOG_FORMAT")
            .env("RUST_LOG", "warn")
            .env(
                "PAYGATE__DATABASE_URL",
                format!("sqlite://{}", dir.path().join("paygate.db").display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let gateway = LoggingGateway {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        eventually("the gateway answers /readyz", async || {
            match http.get(format!("{}/readyz", gateway.base)).send().await {
                Ok(response) if response.status().is_success() => Some(()),
                _ => None,
            }
        })
        .await;
        gateway
    }

    /// Posts a WeChat notify that reports a failure with `return_msg` and waits until it is
    /// logged; returns the whole log.
    async fn log_after_failure_notify(&self, return_msg: &str) -> String {
        let body = format!(
            "<xml><return_code>FAIL</return_code><return_msg><![CDATA[{return_msg}]]></return_msg></xml>"
        );
        let response = reqwest::Client::new()
            .post(format!("{}/notify/wechat/sandbox", self.base))
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.text().await.unwrap().contains("FAIL"));
        wait_for_text(&self.log, "callback rejected").await
    }
}

async fn wait_for_text(path: &Path, needle: &str) -> String {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{needle:?} never logged: {}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

const FORGED: &str = "ok\n2026-12-01T00:00:00.000000Z  INFO paygate: FORGED order paid\r\u{1b}[2K";

#[tokio::test]
async fn a_newline_in_a_notify_cannot_forge_a_log_line_and_a_file_gets_no_colour_codes() {
    let gateway = LoggingGateway::start(&[]).await;
    let log = gateway.log_after_failure_notify(FORGED).await;
    assert!(
        !log.lines()
            .any(|line| line.contains("FORGED") && !line.contains("WARN")),
        "a logged value started a line of its own:\n{log}"
    );
    assert!(log.contains("FORGED"), "the value is still logged:\n{log}");
    assert!(
        !log.contains('\u{1b}') && !log.contains('\r'),
        "control characters reached a log file:\n{log:?}"
    );
}

#[tokio::test]
async fn json_logs_are_chosen_in_the_config_and_escape_by_construction() {
    let gateway = LoggingGateway::start(&[("PAYGATE__LOG__FORMAT", "json")]).await;
    let log = gateway.log_after_failure_notify(FORGED).await;
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|event| event.to_string().contains("FORGED")),
        "{log}"
    );
}
