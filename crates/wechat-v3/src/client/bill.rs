//! The trade bill over APIv3 (bills.md §2): `GET /v3/bill/tradebill` (a signed, verified JSON
//! answer naming the file's SHA1 and a short-lived download URL), then `GET <download_url>`
//! exactly as given, signed over its path and query, its answer unsigned.
//!
//! * `NO_STATEMENT_EXIST` is "no bill", `STATEMENT_CREATING` "not ready"; every other error
//!   maps like any API error.
//! * The SHA1 is of the **decompressed** file (the doc, and the official Java SDK, which hashes
//!   behind its gunzip), so the gzip is inflated, bounded, to check it. A mismatch discards the
//!   file: asking again is the remedy, so it is a retryable refusal.

use std::io::Read;

use chrono::NaiveDate;
use flate2::read::GzDecoder;
use paygate_core::{BillDownload, BillFormat, DownloadedBill, ErrorDetail, ProviderError};
use serde::Deserialize;

use super::{Answer, ApiClient, ApiError, transport_error};
use crate::sign::nonce;

/// The largest bill read, compressed or inflated.
pub const MAX_BILL_BYTES: usize = 512 * 1024 * 1024;

/// The verified answer of `GET /v3/bill/tradebill`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TradeBillAnswer {
    /// `SHA1`.
    pub hash_type: String,
    /// Hex digest of the decompressed file.
    pub hash_value: String,
    /// Where the file is, for a few minutes.
    pub download_url: String,
}

/// What applying for a bill found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// The file can be downloaded.
    Ready(TradeBillAnswer),
    /// `NO_STATEMENT_EXIST`.
    NoBill,
    /// `STATEMENT_CREATING`.
    NotReady,
}

/// Classifies a (verified, or unsigned error) answer of `GET /v3/bill/tradebill`.
pub fn classify_apply(status: u16, body: &[u8]) -> Result<Apply, ProviderError> {
    let answer = Answer {
        status: reqwest::StatusCode::from_u16(status).map_err(|e| {
            ProviderError::UntrustedResponse(ErrorDetail::caused_by("tradebill", e))
        })?,
        body: body.to_vec(),
    };
    match ApiClient::check_status(answer) {
        Ok(answer) => Ok(Apply::Ready(ApiClient::parse(&answer, "tradebill")?)),
        Err(ApiError::Api { code, .. }) if code == "NO_STATEMENT_EXIST" => Ok(Apply::NoBill),
        Err(ApiError::Api { code, .. }) if code == "STATEMENT_CREATING" => Ok(Apply::NotReady),
        Err(error) => Err(error.into()),
    }
}

/// Lower-case hex SHA1 of the file `body` holds (inflated first when it is gzip).
pub fn bill_sha1(body: &[u8]) -> Result<String, ProviderError> {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut inflated = GzDecoder::new(body).take(MAX_BILL_BYTES as u64 + 1);
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let read = inflated.read(&mut buffer).map_err(|e| {
                ProviderError::UntrustedResponse(ErrorDetail::caused_by(
                    "bill download: corrupt gzip",
                    e,
                ))
            })?;
            if read == 0 {
                break;
            }
            total += read;
            if total > MAX_BILL_BYTES {
                return Err(ProviderError::UntrustedResponse(
                    format!("bill download: inflates beyond {MAX_BILL_BYTES} bytes").into(),
                ));
            }
            context.update(&buffer[..read]);
        }
    } else {
        context.update(body);
    }
    Ok(context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Refuses an apply answer naming a digest other than SHA1: nothing to check the file with.
fn check_hash_type(answer: &TradeBillAnswer) -> Result<(), ProviderError> {
    if answer.hash_type.eq_ignore_ascii_case("SHA1") {
        return Ok(());
    }
    Err(ProviderError::UntrustedResponse(
        format!("tradebill: unknown hash_type {:?}", answer.hash_type).into(),
    ))
}

/// Checks the downloaded file against the digest the apply answer named.
pub fn check_bill(body: &[u8], answer: &TradeBillAnswer) -> Result<(), ProviderError> {
    check_hash_type(answer)?;
    let actual = bill_sha1(body)?;
    if !actual.eq_ignore_ascii_case(&answer.hash_value) {
        return Err(ProviderError::Refused {
            code: "HASH_MISMATCH".into(),
            message: format!(
                "the bill's SHA1 is {actual}, the apply answer said {}",
                answer.hash_value
            ),
            retryable: true,
        });
    }
    Ok(())
}

impl ApiClient {
    /// Applies for the trade bill (`bill_type=ALL`, gzip) of Beijing day `day` and downloads
    /// it, checking its SHA1.
    pub async fn download_bill(&self, day: NaiveDate) -> Result<BillDownload, ProviderError> {
        let target = format!(
            "/v3/bill/tradebill?bill_date={}&bill_type=ALL&tar_type=GZIP",
            day.format("%Y-%m-%d")
        );
        let answer = self
            .send(reqwest::Method::GET, &target, None)
            .await
            .map_err(ProviderError::from)?;
        let ready = match classify_apply(answer.status.as_u16(), &answer.body)? {
            Apply::Ready(ready) => ready,
            Apply::NoBill => return Ok(BillDownload::NoBill),
            Apply::NotReady => return Ok(BillDownload::NotReady),
        };
        let body = self.fetch_bill(&ready.download_url).await?;
        // An unknown hash type is an answer we cannot use at all; a file that fails its SHA1
        // or does not inflate is still what WeChat Pay sent: kept as evidence, its run fails
        // with the reason.
        check_hash_type(&ready)?;
        let integrity_failure = match check_bill(&body, &ready) {
            Ok(()) => None,
            Err(ProviderError::Refused { message, .. }) => Some(message),
            Err(ProviderError::UntrustedResponse(detail)) => Some(detail.to_string()),
            Err(other) => return Err(other),
        };
        Ok(BillDownload::File(DownloadedBill {
            format: BillFormat::sniff(&body),
            body,
            integrity_failure,
        }))
    }

    /// `GET` of the download URL as returned, signed over its path and query; the answer
    /// carries no signature, so none is checked (the SHA1 is).
    async fn fetch_bill(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            ProviderError::UntrustedResponse(ErrorDetail::caused_by("download_url", e))
        })?;
        let target = match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let authorization = self
            .app
            .signer
            .authorization("GET", &target, self.now(), &nonce(), b"")
            .map_err(|e| ProviderError::Configuration(e.to_string().into()))?;
        let failed = |e: reqwest::Error| ProviderError::from(transport_error(e));
        let mut response = self
            .http
            .get(parsed)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::USER_AGENT, super::USER_AGENT)
            .send()
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            return Err(ProviderError::Refused {
                code: format!("HTTP_{}", response.status().as_u16()),
                message: "the bill download was refused; apply again".into(),
                retryable: true,
            });
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
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The shared bill vectors, vendored once for the workspace.
    fn vectors() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors/bills")
    }

    #[test]
    fn the_v3_apply_answers_get_the_vectors_classification() {
        let text = std::fs::read(vectors().join("responses.json")).unwrap();
        let responses: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let mut checked = 0;
        for case in responses["cases"].as_array().unwrap() {
            if case["api"] != "GET /v3/bill/tradebill" {
                continue;
            }
            let status = u16::try_from(case["http_status"].as_u64().unwrap()).unwrap();
            let got = match classify_apply(status, case["body"].as_str().unwrap().as_bytes()) {
                Ok(Apply::Ready(answer)) => {
                    assert_eq!(answer.hash_type, "SHA1");
                    "success"
                }
                Ok(Apply::NoBill) => "empty_or_missing",
                Ok(Apply::NotReady) => "not_ready",
                Err(_) => "error",
            };
            assert_eq!(got, case["classification"], "{}", case["id"]);
            checked += 1;
        }
        assert_eq!(checked, 3);
    }

    #[test]
    fn the_sha1_is_of_the_decompressed_file_and_a_mismatch_is_refused() {
        let gzip = std::fs::read(vectors().join("wechat-v3-tradebill-ALL.csv.gz")).unwrap();
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(vectors().join("wechat-v3-tradebill-ALL.expected.json")).unwrap(),
        )
        .unwrap();
        let hash = expected["sha1_hex"].as_str().unwrap();
        let answer = TradeBillAnswer {
            hash_type: "SHA1".into(),
            hash_value: hash.to_uppercase(),
            download_url: "https://example.invalid/v3/billdownload/file?token=t".into(),
        };
        assert_eq!(bill_sha1(&gzip).unwrap(), hash);
        assert_eq!(check_bill(&gzip, &answer), Ok(()));
        let wrong = TradeBillAnswer {
            hash_value: "0".repeat(40),
            ..answer.clone()
        };
        assert!(matches!(
            check_bill(&gzip, &wrong),
            Err(ProviderError::Refused {
                retryable: true,
                ..
            })
        ));
        let mut truncated = gzip.clone();
        truncated.truncate(gzip.len() / 2);
        assert!(check_bill(&truncated, &answer).is_err());
    }
}
