//! `pay/downloadbill` answers from the vendored `responses.json` (bills.md §1.2): each v2 body
//! must get the action the vector names, and a real bill body (the gzip of the vendored ALL
//! bill) comes back byte for byte.

use std::path::PathBuf;

use paygate_core::{BillDownload, BillFormat, ProviderError};
use paygate_wechat::download::classify_bill_body;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors/bills")
}

/// The vectors' classification of an answer.
fn classification(outcome: &Result<BillDownload, ProviderError>) -> &'static str {
    match outcome {
        Ok(BillDownload::File(_)) => "success",
        Ok(BillDownload::NoBill) => "empty_or_missing",
        Ok(BillDownload::NotReady) => "not_ready",
        Ok(BillDownload::Unsupported) => "unsupported",
        Err(ProviderError::Refused {
            retryable: true, ..
        })
        | Err(ProviderError::OutcomeUnknown(_)) => "retry",
        Err(_) => "request_error",
    }
}

#[test]
fn every_v2_downloadbill_answer_gets_the_vectors_classification() {
    let responses: Value =
        serde_json::from_slice(&std::fs::read(dir().join("responses.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in responses["cases"].as_array().unwrap() {
        if case["api"] != "POST /pay/downloadbill" {
            continue;
        }
        let body = case["body"].as_str().unwrap().as_bytes().to_vec();
        let outcome = classify_bill_body(body);
        assert_eq!(
            classification(&outcome),
            case["classification"].as_str().unwrap(),
            "{}: {outcome:?}",
            case["id"]
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "the vectors hold four v2 downloadbill answers");
}

#[test]
fn a_gzip_bill_is_returned_exactly_as_sent() {
    let gzip = std::fs::read(dir().join("wechat-v3-tradebill-ALL.csv.gz")).unwrap();
    match classify_bill_body(gzip.clone()).unwrap() {
        BillDownload::File(file) => {
            assert_eq!(file.format, BillFormat::WechatGzip);
            assert_eq!(file.body, gzip);
        }
        other => panic!("{other:?}"),
    }
    let text = std::fs::read(dir().join("wechat-v2-ALL.csv")).unwrap();
    match classify_bill_body(text.clone()).unwrap() {
        BillDownload::File(file) => {
            assert_eq!(file.format, BillFormat::WechatText);
            assert_eq!(file.body, text);
        }
        other => panic!("{other:?}"),
    }
}
