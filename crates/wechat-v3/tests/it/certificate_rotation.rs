//! Platform certificates over time: downloaded on a bounded schedule (and by a background task),
//! a rotated certificate taken before WeChat signs with it, the old one kept until its listed
//! expiry so notifies signed during the rotation verify, and nothing trusted past its expiry.
//! WeChat's side (the certificate list, the signatures) is played with the crate's `peer`
//! module through the fake server, with both clocks moved by the test.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paygate_wechat_v3::aead::ApiV3Key;
use paygate_wechat_v3::client::{ApiClient, MIN_DOWNLOAD_GAP};
use paygate_wechat_v3::keys::MerchantKey;
use paygate_wechat_v3::notify::NotifyRejection;
use paygate_wechat_v3::peer::{self, ListedCertificate};
use paygate_wechat_v3::verify::{SignatureHeaders, VerifyError};

use crate::fake_wechat::{
    FakeWechat, NEW_PLATFORM_SERIAL, NOW, PLATFORM_SERIAL, Reply, SignAs, client_with, settings,
};
use crate::vectors::read;

const HOUR: i64 = 3600;
const TRANSACTION_PATH: &str =
    "/v3/pay/transactions/out-trade-no/ORD20250101120000001?mchid=1230000109";
const TRANSACTION: &str = r#"{"mchid":"1230000109","appid":"wxd678efh567hg6787","out_trade_no":"ORD20250101120000001","transaction_id":"4200002512202501010000000001","trade_type":"JSAPI","trade_state":"NOTPAY","trade_state_desc":"未支付","amount":{"total":100,"currency":"CNY"}}"#;

fn rfc3339(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339()
}

/// What the fake WeChat lists at `/v3/certificates` and whom it signs the list as; `None`
/// makes the download fail with a 500.
#[derive(Clone)]
struct Listing {
    /// `(serial, PEM file, effective, expire)` per listed certificate.
    certificates: Vec<(&'static str, &'static str, i64, i64)>,
    signed_as: SignAs,
}

fn certificate_list(listing: &Listing) -> String {
    let apiv3 = ApiV3Key::new(&read("keys/apiv3_key.txt")).unwrap();
    let pems: Vec<String> = listing
        .certificates
        .iter()
        .map(|(_, file, _, _)| read(file))
        .collect();
    let times: Vec<(String, String)> = listing
        .certificates
        .iter()
        .map(|&(_, _, effective, expire)| (rfc3339(effective), rfc3339(expire)))
        .collect();
    let listed: Vec<ListedCertificate<'_>> = listing
        .certificates
        .iter()
        .zip(&pems)
        .zip(&times)
        .map(
            |((&(serial_no, ..), pem), (effective, expire))| ListedCertificate {
                serial_no,
                pem,
                effective_time: effective,
                expire_time: expire,
                nonce: "CertNonce001",
            },
        )
        .collect();
    peer::seal_certificates(&apiv3, &listed).unwrap()
}

/// A fake WeChat serving `listing` (changeable) and one order query, signed at the clock.
struct Scene {
    clock: Arc<AtomicI64>,
    listing: Arc<Mutex<Option<Listing>>>,
    // While set, `/v3/certificates` does not answer (a download stuck at WeChat).
    hold_downloads: Arc<AtomicBool>,
    server: FakeWechat,
}

impl Scene {
    async fn start(listing: Option<Listing>) -> Scene {
        let clock = Arc::new(AtomicI64::new(NOW));
        let listing = Arc::new(Mutex::new(listing));
        let hold_downloads = Arc::new(AtomicBool::new(false));
        let (now, current, hold) = (clock.clone(), listing.clone(), hold_downloads.clone());
        let server = FakeWechat::start_at(clock.clone(), move |seen| {
            let timestamp = now.load(Ordering::SeqCst);
            match seen.target.as_str() {
                "/v3/certificates" => {
                    // The fake runs handlers on the blocking pool, so holding here stalls only this
                    // download; bounded so a test that never releases fails instead of hanging.
                    let held_since = std::time::Instant::now();
                    while hold.load(Ordering::SeqCst)
                        && held_since.elapsed() < Duration::from_secs(60)
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    match current.lock().unwrap().clone() {
                        Some(listing) => Reply {
                            timestamp,
                            ..Reply::ok(certificate_list(&listing)).signed(listing.signed_as)
                        },
                        None => {
                            Reply::status(500, r#"{"code":"SYSTEM_ERROR","message":"系统错误"}"#)
                        }
                    }
                }
                TRANSACTION_PATH => Reply {
                    timestamp,
                    ..Reply::ok(TRANSACTION).signed(SignAs::Platform)
                },
                other => panic!("unexpected {other}"),
            }
        })
        .await;
        Scene {
            clock,
            listing,
            hold_downloads,
            server,
        }
    }

    fn client(&self) -> ApiClient {
        client_with(
            settings(&self.server.base, "platform_certificates = true\n"),
            self.clock.clone(),
        )
    }

    fn at(&self, unix: i64) {
        self.clock.store(unix, Ordering::SeqCst);
    }

    fn list(&self, listing: Option<Listing>) {
        *self.listing.lock().unwrap() = listing;
    }

    fn downloads(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.target == "/v3/certificates")
            .count()
    }
}

/// The old certificate alone, listed until `NOW + 36 h`.
fn old_only() -> Listing {
    Listing {
        certificates: vec![(
            PLATFORM_SERIAL,
            "keys/platform_cert.pem",
            NOW - 365 * 24 * HOUR,
            NOW + 36 * HOUR,
        )],
        signed_as: SignAs::Platform,
    }
}

fn new_certificate() -> (&'static str, &'static str, i64, i64) {
    (
        NEW_PLATFORM_SERIAL,
        "keys/platform_cert_new.pem",
        NOW + 36 * HOUR,
        NOW + 5 * 365 * 24 * HOUR,
    )
}

/// Verifies a notify-like message signed by `key_file` under `serial` at the client's clock.
fn verify_signed_by(client: &ApiClient, key_file: &str, serial: &str) -> Result<(), VerifyError> {
    let key = MerchantKey::from_pem(&read(key_file)).unwrap();
    let body = br#"{"id":"EV-1","event_type":"TRANSACTION.SUCCESS"}"#;
    let headers =
        peer::signature_headers(&key, serial, body, client.now(), "5f2b0c1e9a7d4e3b").unwrap();
    let headers =
        SignatureHeaders::from_pairs(headers.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    client.app().keys.verify(&headers, body, client.now())
}

fn held_serials(client: &ApiClient) -> Vec<String> {
    let mut serials: Vec<String> = client
        .app()
        .keys
        .certificate_expiries()
        .into_iter()
        .map(|(serial, _)| serial)
        .collect();
    serials.sort();
    serials
}

#[tokio::test]
async fn a_rotation_keeps_the_old_certificate_until_its_listed_expiry_and_not_a_second_longer() {
    let scene = Scene::start(Some(old_only())).await;
    let client = scene.client();
    assert!(client.refresh_certificates_if_due().await.unwrap());
    // The listed expire_time (NOW + 36 h) wins over the certificate's own notAfter (2035).
    let expiries = client.app().keys.certificate_expiries();
    assert_eq!(expiries.len(), 1);
    assert_eq!(expiries[0].1.timestamp(), NOW + 36 * HOUR);
    assert_eq!(
        verify_signed_by(&client, "keys/platform_cert_key.pem", PLATFORM_SERIAL),
        Ok(())
    );

    // WeChat lists the next certificate ahead of its effective time; the 12-hour refresh
    // takes it while the old one still signs.
    let mut both = old_only();
    both.certificates.push(new_certificate());
    scene.list(Some(both));
    scene.at(NOW + 12 * HOUR);
    assert!(client.refresh_certificates_if_due().await.unwrap());
    assert_eq!(
        held_serials(&client),
        [PLATFORM_SERIAL, NEW_PLATFORM_SERIAL]
    );

    // Later WeChat lists only the new one, signing the list with it: the old certificate is
    // kept, because notifies signed with it keep arriving until it expires.
    scene.list(Some(Listing {
        certificates: vec![new_certificate()],
        signed_as: SignAs::NewPlatform,
    }));
    scene.at(NOW + 24 * HOUR);
    assert!(client.refresh_certificates_if_due().await.unwrap());
    assert_eq!(
        held_serials(&client),
        [PLATFORM_SERIAL, NEW_PLATFORM_SERIAL]
    );
    scene.at(NOW + 36 * HOUR - 1);
    for (key, serial) in [
        ("keys/platform_cert_key.pem", PLATFORM_SERIAL),
        ("keys/platform_cert_new_key.pem", NEW_PLATFORM_SERIAL),
    ] {
        assert_eq!(verify_signed_by(&client, key, serial), Ok(()), "{serial}");
    }

    // At its expiry the old certificate verifies nothing, even before a refresh drops it.
    scene.at(NOW + 36 * HOUR);
    assert_eq!(
        verify_signed_by(&client, "keys/platform_cert_key.pem", PLATFORM_SERIAL),
        Err(VerifyError::ExpiredCertificate(PLATFORM_SERIAL.into()))
    );
    assert!(VerifyError::ExpiredCertificate(PLATFORM_SERIAL.into()).wants_certificate_refresh());
    assert_eq!(
        verify_signed_by(
            &client,
            "keys/platform_cert_new_key.pem",
            NEW_PLATFORM_SERIAL
        ),
        Ok(())
    );
    // The next check drops it.
    client.refresh_certificates_if_due().await.unwrap();
    assert_eq!(held_serials(&client), [NEW_PLATFORM_SERIAL]);
    assert!(matches!(
        verify_signed_by(&client, "keys/platform_cert_key.pem", PLATFORM_SERIAL),
        Err(VerifyError::UnknownSerial(_))
    ));
}

#[tokio::test]
async fn downloads_run_every_12_hours_a_failed_one_is_retried_after_a_minute_and_calls_go_on() {
    let scene = Scene::start(Some(old_only())).await;
    let client = scene.client();
    assert!(client.refresh_certificates_if_due().await.unwrap());
    scene.at(NOW + 12 * HOUR - 1);
    assert!(!client.refresh_certificates_if_due().await.unwrap());
    assert_eq!(scene.downloads(), 1);

    // WeChat's certificate endpoint fails when the refresh is due.
    scene.list(None);
    let due = NOW + 12 * HOUR;
    scene.at(due);
    assert!(client.refresh_certificates_if_due().await.is_err());
    assert_eq!(scene.downloads(), 2);
    // A call meanwhile still goes out and is verified with the certificate held; it does not
    // retry the download within the minute.
    scene.at(due + 30);
    client
        .query_by_out_trade_no("ORD20250101120000001")
        .await
        .unwrap();
    assert!(!client.refresh_certificates_if_due().await.unwrap());
    assert_eq!(scene.downloads(), 2);
    assert_eq!(held_serials(&client), [PLATFORM_SERIAL]);

    // After the gap the download is tried again, and once it succeeds the schedule restarts.
    scene.at(due + MIN_DOWNLOAD_GAP.num_seconds());
    assert!(client.refresh_certificates_if_due().await.is_err());
    assert_eq!(scene.downloads(), 3);
    scene.list(Some(old_only()));
    let recovered = due + 2 * MIN_DOWNLOAD_GAP.num_seconds();
    scene.at(recovered);
    assert!(client.refresh_certificates_if_due().await.unwrap());
    scene.at(recovered + 12 * HOUR - 1);
    assert!(!client.refresh_certificates_if_due().await.unwrap());
    assert_eq!(scene.downloads(), 4);
}

#[tokio::test]
async fn a_call_with_no_certificate_held_is_not_sent_while_downloads_fail() {
    let scene = Scene::start(None).await;
    let client = scene.client();
    for _ in 0..2 {
        let err = client
            .query_by_out_trade_no("ORD20250101120000001")
            .await
            .unwrap_err();
        assert!(
            !paygate_core::ProviderError::from(err.clone()).is_definite_refusal(),
            "{err:?}"
        );
    }
    // One download attempt (the second call came within the minute), and no query sent.
    let targets: Vec<String> = scene
        .server
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/v3/certificates"]);
}

#[tokio::test]
async fn notifies_under_made_up_serials_trigger_at_most_one_download_a_minute() {
    let scene = Scene::start(None).await;
    let client = scene.client();
    let attacker = MerchantKey::from_pem(&read("keys/attacker_key.pem")).unwrap();
    let body = br#"{"id":"EV-forged"}"#;
    for (offset, expected_downloads) in [(0, 1), (30, 1), (59, 1), (60, 2)] {
        scene.at(NOW + offset);
        let headers =
            peer::signature_headers(&attacker, "ABCDEF0123", body, NOW + offset, "n0nce").unwrap();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(client.verify_notify(&pairs, body).await.is_err());
        assert_eq!(scene.downloads(), expected_downloads, "at +{offset} s");
    }
}

/// Polls `done` for up to 5 s, yielding to the runtime in between.
/// Lets held downloads go when dropped, also while a failing test unwinds: a worker thread
/// left blocked in the fake's hold loop would keep the test's runtime from ever shutting down,
/// hanging the whole test binary instead of failing one test.
struct ReleaseOnDrop(Arc<AtomicBool>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    // Up to 30 s: the full suite runs many tests at once on two cores.
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never {what}");
}

#[tokio::test]
async fn the_background_refresh_downloads_at_once_then_when_due_and_ends_with_the_client() {
    let scene = Scene::start(Some(old_only())).await;
    let client = Arc::new(scene.client());
    let task = client
        .spawn_certificate_refresh(Duration::from_millis(20))
        .expect("certificate mode in a runtime");
    // The server counts a download when it is asked, the client holds the certificate once it
    // has read the answer: wait for the latter.
    wait_until("the first download", || held_serials(&client).len() == 1).await;
    assert_eq!(scene.downloads(), 1);
    // Several wakes later, nothing was due.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(scene.downloads(), 1);
    // Twelve hours on, the next wake downloads again; the list now carries the rotated one.
    let mut both = old_only();
    both.certificates.push(new_certificate());
    scene.list(Some(both));
    scene.at(NOW + 12 * HOUR);
    wait_until("the second download", || held_serials(&client).len() == 2).await;
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends once the client is gone")
        .unwrap();
    assert_eq!(scene.downloads(), 2);

    // A public-key-only client has nothing to refresh.
    let public_key_client = Arc::new(crate::fake_wechat::client(
        &scene.server.base,
        "",
        Arc::new(AtomicI64::new(NOW)),
    ));
    assert!(
        public_key_client
            .spawn_certificate_refresh(Duration::from_millis(20))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_does_not_wait_for_a_download_in_progress_while_a_certificate_is_held() {
    let scene = Scene::start(Some(old_only())).await;
    let client = Arc::new(scene.client());
    assert!(client.refresh_certificates_if_due().await.unwrap());
    scene.at(NOW + 12 * HOUR);
    scene.hold_downloads.store(true, Ordering::SeqCst);
    let _release = ReleaseOnDrop(scene.hold_downloads.clone());
    let refreshing = tokio::spawn({
        let client = client.clone();
        async move { client.refresh_certificates_if_due().await }
    });
    wait_until("the download to reach WeChat", || scene.downloads() == 2).await;
    // The download hangs at WeChat; a call goes out meanwhile and is verified with the
    // certificate held, instead of queueing behind the download for up to its timeout.
    // The download is held until released below, so any bound tells waiting from not waiting;
    // a generous one keeps a loaded machine from failing a call that did not wait.
    let call = tokio::time::timeout(
        Duration::from_secs(20),
        client.query_by_out_trade_no("ORD20250101120000001"),
    )
    .await;
    let download_was_running = !refreshing.is_finished();
    // Released before asserting, so a failure does not leave the fake's thread blocked.
    scene.hold_downloads.store(false, Ordering::SeqCst);
    let facts = call
        .expect("the call does not wait for the download")
        .unwrap();
    assert_eq!(facts.out_trade_no, "ORD20250101120000001");
    assert!(download_was_running);
    assert!(refreshing.await.unwrap().unwrap());
    assert_eq!(scene.downloads(), 2);
}

#[tokio::test]
async fn a_serial_listed_since_the_last_scheduled_download_is_fetched_at_once() {
    let scene = Scene::start(Some(old_only())).await;
    let client = scene.client();
    assert!(client.refresh_certificates_if_due().await.unwrap());
    // Seconds later WeChat lists a new certificate and a notify comes signed with it: the
    // scheduled download just made does not hold back the one the unknown serial asks for.
    let mut both = old_only();
    both.certificates.push(new_certificate());
    scene.list(Some(both));
    scene.at(NOW + 10);
    let key = MerchantKey::from_pem(&read("keys/platform_cert_new_key.pem")).unwrap();
    let body = br#"{"id":"EV-2"}"#;
    let headers =
        peer::signature_headers(&key, NEW_PLATFORM_SERIAL, body, NOW + 10, "n0nce2").unwrap();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rejection = client.verify_notify(&pairs, body).await.unwrap_err();
    // The signature verified once the certificate was fetched; only the body is no notify.
    assert!(
        matches!(rejection, NotifyRejection::Malformed(_)),
        "{rejection:?}"
    );
    assert_eq!(scene.downloads(), 2);
}
