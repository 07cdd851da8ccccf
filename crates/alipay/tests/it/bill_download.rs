//! `alipay.data.dataservice.bill.downloadurl.query` answers from the vendored
//! `responses.json` (bills.md §4.2). Their `sign` is a placeholder, so the verified-content
//! half of the client is exercised: the response object goes through the same code mapping
//! (`client::outcome`) and bill classification the live call uses.

use std::path::PathBuf;

use paygate_alipay::client::outcome;
use paygate_alipay::download::{BILL_URL_METHOD, BillUrl, bill_url_outcome};
use paygate_core::ProviderError;
use serde_json::Value;

fn classification(result: &Result<BillUrl, ProviderError>) -> &'static str {
    match result {
        Ok(BillUrl::Url(_)) => "success",
        Ok(BillUrl::NoBill) => "empty_or_missing",
        Err(ProviderError::Refused {
            retryable: true, ..
        })
        | Err(ProviderError::OutcomeUnknown(_)) => "retry",
        Err(_) => "request_error",
    }
}

#[test]
fn every_alipay_bill_url_answer_gets_the_vectors_classification() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/vectors/bills/responses.json");
    let responses: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut checked = 0;
    for case in responses["cases"].as_array().unwrap() {
        if case["provider"] != "alipay" {
            continue;
        }
        let body: Value = serde_json::from_str(case["body"].as_str().unwrap()).unwrap();
        let fields = body["alipay_data_dataservice_bill_downloadurl_query_response"]
            .as_object()
            .unwrap()
            .clone();
        let result = bill_url_outcome(outcome(BILL_URL_METHOD, fields));
        assert_eq!(
            classification(&result),
            case["classification"].as_str().unwrap(),
            "{}: {result:?}",
            case["id"]
        );
        if let Ok(BillUrl::Url(url)) = &result {
            assert!(url.contains("downloadBillFile.resource"), "{url}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}
