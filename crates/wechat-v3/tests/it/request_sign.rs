//! `request_sign.json`: the signed message, the signature and the whole Authorization header,
//! byte for byte, including the official doc examples.

use paygate_wechat_v3::keys::MerchantKey;
use paygate_wechat_v3::sign::{MerchantSigner, parse_authorization, request_message};

use crate::vectors::{cases, name, read, text};

fn signer(case: &serde_json::Value) -> MerchantSigner {
    let key = MerchantKey::from_pem(&read(text(case, "key"))).unwrap();
    MerchantSigner::new(text(case, "mchid"), text(case, "serial_no"), key)
}

#[test]
fn every_request_signature_and_authorization_is_reproduced_byte_for_byte() {
    for case in cases("request_sign.json") {
        let signer = signer(&case);
        let timestamp: i64 = text(&case, "timestamp").parse().unwrap();
        let (method, url, nonce, body) = (
            text(&case, "method"),
            text(&case, "url"),
            text(&case, "nonce"),
            text(&case, "body"),
        );
        let message = request_message(method, url, timestamp, nonce, body.as_bytes());
        assert_eq!(
            String::from_utf8(message.clone()).unwrap(),
            text(&case, "message"),
            "{}",
            name(&case)
        );
        assert_eq!(
            signer.sign(&message).unwrap(),
            text(&case, "signature"),
            "{}",
            name(&case)
        );
        let header = signer
            .authorization(method, url, timestamp, nonce, body.as_bytes())
            .unwrap();
        assert_eq!(header, text(&case, "authorization"), "{}", name(&case));
        // The other SDK's field order carries the same five values.
        assert_eq!(
            parse_authorization(text(&case, "authorization_axios_field_order")),
            parse_authorization(&header),
            "{}",
            name(&case)
        );
        if let Some(documented) = case["documented_signature"].as_str() {
            assert_eq!(
                signer.sign(&message).unwrap(),
                documented,
                "{}",
                name(&case)
            );
        }
    }
}
