//! Conformance, not mirror-image: the sandbox accepts what the official SDKs send (vendored
//! vectors), rejects tampering, and its notifies and responses verify under the official rules
//! implemented here independently (md-5, hmac, aes/ecb and aws-lc-rs directly; none of
//! paygate's own verification code).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use paygate_core::ProviderKind;
use paygate_sandbox::{NotifyKind, RunningSandbox, Sandbox, SandboxConfig};
use paygate_wechat::sign::SignType;

use crate::helpers::{
    NotifyReceiver, TIME_SCALE, WAIT, WECHAT_SUCCESS_XML, WechatMerchant, trade_no,
};

const WECHAT_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../wechat/tests/data/vectors/wechat"
);
const ALIPAY_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../alipay/tests/data/vectors/alipay"
);

fn vector(dir: &str, file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{file}")).unwrap()).unwrap()
}

fn vector_text(dir: &str, file: &str) -> String {
    std::fs::read_to_string(format!("{dir}/{file}"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A sandbox holding the vectors' merchant identities and keys (through its keys file), so
/// requests signed by the official SDKs are addressed to it.
async fn sandbox_with_vector_keys() -> (RunningSandbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keys = serde_json::json!({
        "wechat_appid": "wxd930ea5d5a258f4f",
        "wechat_mch_id": "10000100",
        "wechat_api_key": "192006250b4c09247ec02edce69f6a2d",
        "wechat_app_secret": "0123456789abcdef0123456789abcdef",
        "alipay_app_id": "2021000000000001",
        "alipay_seller_id": "2088102177000000",
        "alipay_app_private_key": vector_text(ALIPAY_VECTORS, "keys/app_private_pkcs8.b64"),
        "alipay_platform_private_key": vector_text(ALIPAY_VECTORS, "keys/alipay_private_pkcs8.b64"),
    });
    let path = dir.path().join("keys.json");
    std::fs::write(&path, keys.to_string()).unwrap();
    let mut config = SandboxConfig::for_tests(TIME_SCALE);
    config.keys_file = Some(path);
    (Sandbox::start(config).await.unwrap(), dir)
}

// ---- independent implementations of the official rules -------------------------------------

/// Flat `<xml>`/`<root>` reader for test bodies: `<name>value</name>` children, CDATA unwrapped.
fn read_flat_xml(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let inner = text.trim();
    let inner = inner
        .strip_prefix("<xml>")
        .or_else(|| inner.strip_prefix("<root>"))
        .unwrap_or(inner);
    let mut rest = inner;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let name = &after[..close];
        if name.starts_with('/') {
            rest = &after[close + 1..];
            continue;
        }
        let end_tag = format!("</{name}>");
        let Some(end) = after.find(&end_tag) else {
            break;
        };
        let raw = &after[close + 1..end];
        let value = raw
            .strip_prefix("<![CDATA[")
            .and_then(|v| v.strip_suffix("]]>"))
            .map(|v| v.replace("]]]]><![CDATA[>", "]]>"))
            .unwrap_or_else(|| {
                raw.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            });
        fields.insert(name.to_owned(), value);
        rest = &after[end + end_tag.len()..];
    }
    fields
}

fn wechat_string_to_sign(fields: &BTreeMap<String, String>, key: &str) -> String {
    let mut text: Vec<String> = fields
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    text.push(format!("key={key}"));
    text.join("&")
}

fn wechat_md5(fields: &BTreeMap<String, String>, key: &str) -> String {
    use md5::Digest;
    hex::encode_upper(md5::Md5::digest(
        wechat_string_to_sign(fields, key).as_bytes(),
    ))
}

fn wechat_hmac(fields: &BTreeMap<String, String>, key: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(wechat_string_to_sign(fields, key).as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// WeChat's rule: the algorithm of the order (with sign_type, if present, being signed too).
fn wechat_notify_verifies(body: &str, key: &str, order_used_hmac: bool) -> bool {
    let fields = read_flat_xml(body);
    let Some(sign) = fields.get("sign") else {
        return false;
    };
    let expected = if order_used_hmac {
        wechat_hmac(&fields, key)
    } else {
        wechat_md5(&fields, key)
    };
    *sign == expected
}

fn wechat_decrypt_req_info(req_info: &str, key: &str) -> Option<String> {
    use ecb::cipher::block_padding::Pkcs7;
    use ecb::cipher::{BlockDecryptMut, KeyInit};
    use md5::Digest;
    let aes_key = hex::encode(md5::Md5::digest(key.as_bytes()));
    let ciphertext = STANDARD.decode(req_info).ok()?;
    let plaintext = ecb::Decryptor::<aes::Aes256>::new(aes_key.as_bytes().into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .ok()?;
    String::from_utf8(plaintext).ok()
}

fn rsa2_verifies(spki_base64: &str, message: &[u8], sign_base64: &str) -> bool {
    let (Ok(spki), Ok(signature)) = (STANDARD.decode(spki_base64), STANDARD.decode(sign_base64))
    else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        spki,
    )
    .verify(message, &signature)
    .is_ok()
}

/// rsaCheckV1: decode the form once, drop sign and sign_type and empties, sort, join, verify.
fn alipay_notify_verifies(form_body: &str, alipay_public_key: &str) -> bool {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(form_body.as_bytes())
        .into_owned()
        .collect();
    let Some(sign) = params.get("sign") else {
        return false;
    };
    let content: Vec<String> = params
        .iter()
        .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    rsa2_verifies(alipay_public_key, content.join("&").as_bytes(), sign)
}

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

// ---- the independent verifiers agree with the vectors ---------------------------------------

#[test]
fn the_independent_verifiers_agree_with_the_official_vectors() {
    let notify = vector(WECHAT_VECTORS, "notify.json");
    let case = |id: &str| {
        notify["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    let key = "192006250b4c09247ec02edce69f6a2d";
    assert!(wechat_notify_verifies(
        case("N01_valid_md5")["notify_xml"].as_str().unwrap(),
        key,
        false
    ));
    assert!(!wechat_notify_verifies(
        case("N03_amount_tampered_after_signing")["notify_xml"]
            .as_str()
            .unwrap(),
        key,
        false
    ));
    assert!(wechat_notify_verifies(
        case("N09_hmac_signed_with_sign_type_field")["notify_xml"]
            .as_str()
            .unwrap(),
        key,
        true
    ));

    let refund = vector(WECHAT_VECTORS, "refund_notify.json");
    let f01 = &refund["cases"][0];
    assert_eq!(
        wechat_decrypt_req_info(f01["req_info_b64"].as_str().unwrap(), key).as_deref(),
        f01["plaintext_xml"].as_str()
    );

    let alipay = vector(ALIPAY_VECTORS, "notify.json");
    let alipay_case = |name: &str| {
        alipay["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let public = pem_body(
        &std::fs::read_to_string(format!("{ALIPAY_VECTORS}/keys/alipay_public.pem")).unwrap(),
    );
    assert!(alipay_notify_verifies(
        alipay_case("valid_trade_success")["form_body"]
            .as_str()
            .unwrap(),
        &public
    ));
    assert!(!alipay_notify_verifies(
        alipay_case("tampered_total_amount")["form_body"]
            .as_str()
            .unwrap(),
        &public
    ));
    assert!(!alipay_notify_verifies(
        alipay_case("signed_including_sign_type_v2")["form_body"]
            .as_str()
            .unwrap(),
        &public
    ));
}

// ---- requests signed by the official SDKs ---------------------------------------------------

#[tokio::test]
async fn official_sdk_unifiedorder_requests_are_accepted_and_a_tampered_one_is_rejected() {
    let vectors = vector(WECHAT_VECTORS, "unifiedorder.json");
    let key = vectors["api_key"].as_str().unwrap();
    let requests: Vec<String> = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["request_xml"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        requests.len(),
        3,
        "wechatpy, axios-plugin and tenpay requests"
    );
    let post = |sandbox: &RunningSandbox, xml: String| {
        let url = format!("{}/pay/unifiedorder", sandbox.wechat_api_base());
        async move {
            reqwest::Client::new()
                .post(url)
                .body(xml)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    // The three SDKs send the same out_trade_no with slightly different fields (tenpay omits
    // fee_type), so each goes to a fresh sandbox.
    for request in &requests {
        let (sandbox, _dir) = sandbox_with_vector_keys().await;
        let answer = post(&sandbox, request.clone()).await;
        let fields = read_flat_xml(&answer);
        assert_eq!(fields["return_code"], "SUCCESS", "{answer}");
        assert_eq!(fields["result_code"], "SUCCESS", "{answer}");
        assert!(fields["prepay_id"].starts_with("wx"));
        assert_eq!(
            fields["sign"],
            wechat_md5(&fields, key),
            "the answer is signed with MD5 like the request"
        );
    }

    let (sandbox, _dir) = sandbox_with_vector_keys().await;
    let tampered = requests[0].replace("<total_fee>888</total_fee>", "<total_fee>1</total_fee>");
    assert_ne!(tampered, requests[0]);
    let refused = read_flat_xml(&post(&sandbox, tampered).await);
    assert_eq!(refused["return_code"], "FAIL");
    assert_eq!(refused["return_msg"], "签名错误");
}

#[tokio::test]
async fn official_sdk_order_strings_are_accepted_and_a_tampered_one_is_rejected() {
    let (sandbox, _dir) = sandbox_with_vector_keys().await;
    let vectors = vector(ALIPAY_VECTORS, "app_pay_order_string.json");
    let http = reqwest::Client::new();
    let submit = |order_string: String| {
        let http = http.clone();
        let url = format!("{}/sandbox/alipay/app-pay", sandbox.base_url());
        async move {
            let response = http.post(url).body(order_string).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let order_strings: Vec<String> = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["order_string"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order_strings.len(), 5);
    for order_string in &order_strings {
        let (status, body) = submit(order_string.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let trade = sandbox
        .trade(ProviderKind::ALIPAY, "ORDER_20240102_0001")
        .unwrap();
    assert_eq!(trade.amount.get(), 8888);

    let tampered = order_strings[0].replace("88.88", "0.01");
    assert_ne!(tampered, order_strings[0]);
    let (status, body) = submit(tampered).await;
    assert_eq!(status, 400);
    assert!(body.contains("isv.invalid-signature"), "{body}");
}

// ---- the sandbox's own notifies and responses, checked independently ------------------------

#[tokio::test]
async fn wechat_payment_and_refund_notifies_verify_under_the_official_rules() {
    let (sandbox, _dir) = sandbox_with_vector_keys().await;
    let key = sandbox.credentials().wechat.api_key.clone();
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let merchant = WechatMerchant::of(&sandbox);
    let md5_no = trade_no("CONFMD5");
    let hmac_no = trade_no("CONFHMAC");
    merchant
        .jsapi_order(&md5_no, "100", &receiver.url, SignType::Md5)
        .await;
    merchant
        .jsapi_order(&hmac_no, "100", &receiver.url, SignType::HmacSha256)
        .await;
    sandbox.pay(ProviderKind::WECHAT, &md5_no).unwrap();
    sandbox.pay(ProviderKind::WECHAT, &hmac_no).unwrap();
    let out_refund_no = format!("{md5_no}R");
    merchant
        .call(
            "/secapi/pay/refund",
            &[
                ("out_trade_no", &md5_no),
                ("out_refund_no", &out_refund_no),
                ("total_fee", "100"),
                ("refund_fee", "30"),
                ("notify_url", &receiver.url),
            ],
            SignType::Md5,
        )
        .await;
    let deliveries = sandbox
        .wait_for_deliveries(WAIT, |d| d.iter().filter(|x| x.acknowledged).count() == 3)
        .await
        .unwrap();

    let payment = |no: &str| {
        deliveries
            .iter()
            .find(|d| d.out_trade_no == no && d.kind == NotifyKind::Payment)
            .unwrap()
    };
    let md5_body = &payment(&md5_no).body;
    let hmac_body = &payment(&hmac_no).body;
    assert!(wechat_notify_verifies(md5_body, &key, false));
    assert!(!wechat_notify_verifies(md5_body, &key, true));
    assert!(wechat_notify_verifies(hmac_body, &key, true));
    let md5_fields = read_flat_xml(md5_body);
    assert_eq!(md5_fields["total_fee"], "100");
    assert_eq!(md5_fields["result_code"], "SUCCESS");
    assert_eq!(md5_fields["appid"], "wxd930ea5d5a258f4f");
    assert_eq!(md5_fields["mch_id"], "10000100");

    let refund = deliveries
        .iter()
        .find(|d| d.kind == NotifyKind::Refund)
        .unwrap();
    let outer = read_flat_xml(&refund.body);
    assert!(
        !outer.contains_key("sign"),
        "the refund notify is authenticated by encryption only"
    );
    let plaintext = wechat_decrypt_req_info(&outer["req_info"], &key).unwrap();
    let inner = read_flat_xml(&plaintext);
    assert!(plaintext.starts_with("<root>"));
    assert_eq!(inner["out_refund_no"], out_refund_no);
    assert_eq!(inner["refund_fee"], "30");
    assert_eq!(inner["refund_status"], "SUCCESS");
}

#[tokio::test]
async fn alipay_notifies_and_responses_verify_under_the_official_rules() {
    let (sandbox, _dir) = sandbox_with_vector_keys().await;
    let credentials = sandbox.credentials().alipay.clone();
    let receiver = NotifyReceiver::always("success").await;
    let app_key = paygate_alipay::keys::SigningKey::parse(&credentials.app_private_key).unwrap();
    let http = reqwest::Client::new();
    let call = |method: &'static str, biz: serde_json::Value, notify_url: Option<String>| {
        let mut params: paygate_alipay::sign::Params = [
            ("app_id", credentials.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", "2024-01-02 03:04:05"),
            ("version", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        params.insert("biz_content".into(), biz.to_string());
        if let Some(url) = notify_url {
            params.insert("notify_url".into(), url);
        }
        paygate_alipay::sign::sign_params(
            &mut params,
            paygate_alipay::sign::SignScope::Request,
            &app_key,
        )
        .unwrap();
        let http = http.clone();
        let url = credentials.gateway_url.clone();
        async move {
            http.post(url)
                .form(&params)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let no = trade_no("CONFALI");
    let created = call(
        "alipay.trade.precreate",
        serde_json::json!({"out_trade_no": no, "total_amount": "12.34", "subject": "测试 a+b & c"}),
        Some(receiver.url.clone()),
    )
    .await;
    // The response is signed over the exact text of the *_response member.
    let key = "\"alipay_trade_precreate_response\":";
    let start = created.find(key).unwrap() + key.len();
    let end = created.rfind(",\"sign\":\"").unwrap();
    let sign = created[end + 9..].trim_end_matches("\"}");
    assert!(
        rsa2_verifies(
            &credentials.alipay_public_key,
            &created.as_bytes()[start..end],
            sign
        ),
        "{created}"
    );

    sandbox.pay(ProviderKind::ALIPAY, &no).unwrap();
    call(
        "alipay.trade.refund",
        serde_json::json!({"out_trade_no": no, "refund_amount": "12.34", "out_request_no": "R1"}),
        None,
    )
    .await;
    let deliveries = sandbox
        .wait_for_deliveries(WAIT, |d| d.iter().filter(|x| x.acknowledged).count() == 2)
        .await
        .unwrap();
    for delivery in &deliveries {
        assert!(
            alipay_notify_verifies(&delivery.body, &credentials.alipay_public_key),
            "{}",
            delivery.body
        );
        let fields: BTreeMap<String, String> =
            url::form_urlencoded::parse(delivery.body.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(fields["sign_type"], "RSA2");
        assert_eq!(fields["total_amount"], "12.34");
        assert_eq!(fields["app_id"], "2021000000000001");
        assert_eq!(fields["seller_id"], "2088102177000000");
        assert_eq!(fields["subject"], "测试 a+b & c");
        assert_eq!(fields["notify_type"], "trade_status_sync");
    }
    let refund = deliveries
        .iter()
        .find(|d| d.kind == NotifyKind::Refund)
        .unwrap();
    assert!(refund.body.contains("trade_status=TRADE_CLOSED"));
    assert!(refund.body.contains("out_biz_no=R1"));

    // A response signature under the wrong key does not verify: the check can fail.
    let tampered = created[start..end].replace("10000", "10001");
    assert!(!rsa2_verifies(
        &credentials.alipay_public_key,
        tampered.as_bytes(),
        sign
    ));
}

#[tokio::test]
async fn the_exported_toml_and_the_notify_log_endpoint_describe_the_running_sandbox() {
    let sandbox = crate::helpers::spawn_sandbox().await;
    let toml = sandbox.credentials().export_toml("sandbox");
    assert!(toml.contains("[wechat.sandbox]"));
    assert!(toml.contains("[alipay.sandbox]"));
    assert!(toml.contains(&format!("api_base = \"{}\"", sandbox.wechat_api_base())));
    assert!(toml.contains(&format!(
        "gateway_url = \"{}\"",
        sandbox.alipay_gateway_url()
    )));
    assert!(toml.contains(&format!(
        "app_private_key = \"{}\"",
        sandbox.credentials().alipay.app_private_key
    )));

    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let merchant = WechatMerchant::of(&sandbox);
    let no = trade_no("CONFLOG");
    merchant
        .jsapi_order(&no, "1", &receiver.url, SignType::Md5)
        .await;
    sandbox.pay(ProviderKind::WECHAT, &no).unwrap();
    crate::helpers::wait_acknowledged(&sandbox, &no).await;
    let log: serde_json::Value = crate::helpers::get_json(format!(
        "{}/sandbox/notifies?out_trade_no={no}",
        sandbox.base_url()
    ))
    .await;
    assert_eq!(log.as_array().map(Vec::len), Some(1));
    assert_eq!(log[0]["out_trade_no"], no);
    assert_eq!(log[0]["acknowledged"], true);
    assert_eq!(log[0]["attempt"], 1);
}

/// A sandbox config that keeps keys and trades in files under `dir`, as the gateway's default
/// run keeps them.
fn persisted_config(dir: &std::path::Path) -> SandboxConfig {
    let mut config = SandboxConfig::for_tests(TIME_SCALE);
    config.keys_file = Some(dir.join("sandbox-keys.json"));
    config.state_file = Some(dir.join("sandbox-trades.json"));
    config
}

#[tokio::test]
async fn a_restarted_sandbox_keeps_its_keys_and_every_order_payable() {
    // Arrange: keys and trades in files, as the gateway's default run keeps them
    let dir = tempfile::tempdir().unwrap();
    let config = || persisted_config(dir.path());
    let first = Sandbox::start(config()).await.unwrap();
    let api_key = first.credentials().wechat.api_key.clone();
    let merchant = WechatMerchant::of(&first);
    let no = trade_no("RESTART");
    let created = merchant
        .jsapi_order(&no, "42", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    first.stop().await;

    // Act
    let second = Sandbox::start(config()).await.unwrap();

    // Assert: same merchant key, the order is still there and can be paid
    assert_eq!(second.credentials().wechat.api_key, api_key);
    let paid = second.pay_prepay_id(&created["prepay_id"]).unwrap();
    assert_eq!(paid.out_trade_no, no);
    assert_eq!(paid.amount.get(), 42);
}

#[tokio::test]
async fn a_second_sandbox_on_the_same_trade_journal_is_refused_until_the_first_stops() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let config = || persisted_config(dir.path());
    let first = Sandbox::start(config()).await.unwrap();

    // Act
    let second = Sandbox::start(config()).await;

    // Assert: refused while the first journals there, fine once it has stopped
    match second {
        Err(paygate_sandbox::SandboxError::StateInUse { path, .. }) => {
            assert!(path.ends_with("sandbox-trades.json"), "{}", path.display());
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("two sandboxes share one trade journal"),
    }
    first.stop().await;
    Sandbox::start(config()).await.unwrap().stop().await;
}
