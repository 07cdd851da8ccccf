//! `alipay.data.dataservice.bill.downloadurl.query` and the zip behind its
//! `bill_download_url` (bills.md §4): one day's trade bill (`bill_type=trade`).
//!
//! Decisions:
//! * The query is an ordinary signed gateway call, verified like any other; the download is a
//!   plain unsigned GET of the URL exactly as returned (it expires within 30 s, so it is
//!   fetched at once and never stored).
//! * `isp.bill_not_exist` (what production sends; the spec's `BILL_NOT_EXIST` too) is "no
//!   bill". Alipay gives the same answer before its bill is made, so the caller decides
//!   between an empty day and a late bill by looking at its own books.
//! * The download must be a zip (`PK\x03\x04`): the expired-link page ("下载超时") is text,
//!   and asking again is the remedy, so anything else is a retryable refusal.

use chrono::NaiveDate;
use paygate_core::{BillDownload, BillFormat, DownloadedBill, ErrorDetail, ProviderError};
use serde_json::{Map, Value};

use crate::client::GatewayClient;

/// The API method.
pub const BILL_URL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// The largest zip read.
pub const MAX_BILL_BYTES: usize = 512 * 1024 * 1024;

/// What the download-URL query answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillUrl {
    /// Where the zip is, for the next 30 seconds.
    Url(String),
    /// No bill for the day (yet).
    NoBill,
}

/// Classifies a verified (or refused) download-URL answer; `result` is what
/// [`GatewayClient::execute`] (or [`crate::client::outcome`]) returned for it.
pub fn bill_url_outcome(
    result: Result<Map<String, Value>, ProviderError>,
) -> Result<BillUrl, ProviderError> {
    match result {
        Ok(fields) => match fields.get("bill_download_url").and_then(Value::as_str) {
            Some(url) if !url.is_empty() => Ok(BillUrl::Url(url.to_owned())),
            _ => Err(ProviderError::UntrustedResponse(
                format!("{BILL_URL_METHOD}: success without bill_download_url").into(),
            )),
        },
        Err(ProviderError::Refused { code, .. })
            if code.eq_ignore_ascii_case("isp.bill_not_exist")
                || code.eq_ignore_ascii_case("BILL_NOT_EXIST") =>
        {
            Ok(BillUrl::NoBill)
        }
        Err(other) => Err(other),
    }
}

/// Fetches the zip at `url`, refusing anything that is not one.
async fn fetch_zip(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, ProviderError> {
    let failed = |e: reqwest::Error| {
        ProviderError::OutcomeUnknown(ErrorDetail::caused_by("bill download", e))
    };
    let mut response = http.get(url).send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(ProviderError::OutcomeUnknown(
            format!("bill download: HTTP {}", response.status()).into(),
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if bytes.len() + chunk.len() > MAX_BILL_BYTES {
            return Err(ProviderError::UntrustedResponse(
                format!("bill download: larger than {MAX_BILL_BYTES} bytes").into(),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    if !bytes.starts_with(b"PK\x03\x04") {
        // The expired-link page, or a proxy's error page: ask for a new URL.
        return Err(ProviderError::Refused {
            code: "NOT_A_ZIP".into(),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            retryable: true,
        });
    }
    Ok(bytes)
}

impl GatewayClient {
    /// The trade bill of Beijing day `day`: the download URL, then the zip.
    pub async fn download_bill(&self, day: NaiveDate) -> Result<BillDownload, ProviderError> {
        let biz = serde_json::json!({
            "bill_type": "trade",
            "bill_date": day.format("%Y-%m-%d").to_string(),
        })
        .to_string();
        let answer = self.execute(BILL_URL_METHOD, biz, None).await;
        match bill_url_outcome(answer)? {
            BillUrl::NoBill => Ok(BillDownload::NoBill),
            BillUrl::Url(url) => Ok(BillDownload::File(DownloadedBill {
                format: BillFormat::AlipayZip,
                integrity_failure: None,
                body: fetch_zip(self.http(), &url).await?,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_without_a_url_is_not_trusted() {
        assert!(matches!(
            bill_url_outcome(Ok(Map::new())),
            Err(ProviderError::UntrustedResponse(_))
        ));
    }
}
