//! `pay/downloadbill`: one day's trade bill (`bill_type=ALL`, `tar_type=GZIP`), as the bytes
//! WeChat sent, or the answer that there is none yet or none at all (bills.md §1).
//!
//! Decisions:
//! * The success body *is* the bill, with no envelope and no signature; an error is a small
//!   unsigned XML document, **even when gzip was asked for**. So the body is sniffed: the gzip
//!   magic `1f 8b` is a compressed bill, `<xml>` an error, anything else a plain-text bill
//!   (what WeChat sends when it ignores `tar_type`).
//! * Errors are classified by `return_msg`, compared case-insensitively, because the real
//!   value (`No Bill Exist`) differs from the doc's (`NO Bill Exist`) and `error_code` is
//!   undocumented. `SYSTEMERROR` and WeChat's own gzip failures are worth retrying; `System
//!   Error` (code 100) is what WeChat answers a bad signature with, so it is not.
//! * The body is read up to [`MAX_BILL_BYTES`], so a runaway answer cannot exhaust memory.

use chrono::NaiveDate;
use paygate_core::{BillDownload, BillFormat, DownloadedBill, ErrorDetail, ProviderError};

use crate::client::{ApiClient, ApiError};
use crate::pay_params::nonce_str;
use crate::sign::Params;
use crate::xml;

/// The largest bill body read (a million-row bill is about 330 MB as text, far less gzipped).
pub const MAX_BILL_BYTES: usize = 512 * 1024 * 1024;

/// The largest error document accepted.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// What the `pay/downloadbill` body says, before any HTTP concern.
pub fn classify_bill_body(body: Vec<u8>) -> Result<BillDownload, ProviderError> {
    if body.starts_with(&[0x1f, 0x8b]) {
        return Ok(BillDownload::File(DownloadedBill {
            format: BillFormat::WechatGzip,
            integrity_failure: None,
            body,
        }));
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    if !body[start..].starts_with(b"<xml") {
        if body.is_empty() {
            return Err(ProviderError::UntrustedResponse(
                "downloadbill: empty body".into(),
            ));
        }
        return Ok(BillDownload::File(DownloadedBill {
            format: BillFormat::WechatText,
            integrity_failure: None,
            body,
        }));
    }
    let fields = xml::parse_with_root(&body, "xml", MAX_ERROR_BYTES)
        .map_err(|e| ProviderError::UntrustedResponse(ErrorDetail::caused_by("downloadbill", e)))?;
    let message = fields.get("return_msg").cloned().unwrap_or_default();
    let code = fields
        .get("error_code")
        .cloned()
        .unwrap_or_else(|| "FAIL".to_owned());
    classify_error(&code, &message)
}

/// Maps a `downloadbill` error's `return_msg` (bills.md §1.2 and `responses.json`).
fn classify_error(code: &str, message: &str) -> Result<BillDownload, ProviderError> {
    let refused = |retryable| ProviderError::Refused {
        code: code.to_owned(),
        message: message.to_owned(),
        retryable,
    };
    match message.to_ascii_lowercase().as_str() {
        "no bill exist" => Ok(BillDownload::NoBill),
        "bill creating" => Ok(BillDownload::NotReady),
        "systemerror" | "compressgzip error" | "uncompressgzip error" => Err(refused(true)),
        "sign error" | "system error" => Err(ProviderError::Configuration(
            format!(
                "downloadbill refused ({code}): {message}; WeChat answers this to a bad signature"
            )
            .into(),
        )),
        _ => Err(refused(false)),
    }
}

impl ApiClient {
    /// `pay/downloadbill` for Beijing day `day`: every payment and refund of the merchant
    /// (`bill_type=ALL`), gzip-compressed.
    pub async fn download_bill(&self, day: NaiveDate) -> Result<BillDownload, ProviderError> {
        let mut params = Params::new();
        params.insert("bill_date".into(), day.format("%Y%m%d").to_string());
        params.insert("bill_type".into(), "ALL".into());
        params.insert("tar_type".into(), "GZIP".into());
        let signed = self.sign_request(params, &nonce_str());
        let body = xml::write(&signed).map_err(|e| ProviderError::from(ApiError::from(e)))?;
        let mut response = self
            .http()
            .post(self.url("/pay/downloadbill"))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                ProviderError::OutcomeUnknown(ErrorDetail::caused_by("downloadbill", e))
            })?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(ProviderError::OutcomeUnknown(
                format!("downloadbill: HTTP {status}").into(),
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ProviderError::OutcomeUnknown(ErrorDetail::caused_by("downloadbill", e)))?
        {
            if bytes.len() + chunk.len() > MAX_BILL_BYTES {
                return Err(ProviderError::UntrustedResponse(
                    format!("downloadbill: the body is larger than {MAX_BILL_BYTES} bytes").into(),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        classify_bill_body(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_error_messages_are_classified_whatever_their_case() {
        assert_eq!(
            classify_error("20002", "NO Bill Exist"),
            Ok(BillDownload::NoBill)
        );
        assert_eq!(
            classify_error("FAIL", "Bill Creating"),
            Ok(BillDownload::NotReady)
        );
        for retry in ["SYSTEMERROR", "CompressGZip Error", "UnCompressGZip Error"] {
            assert!(
                matches!(
                    classify_error("FAIL", retry),
                    Err(ProviderError::Refused {
                        retryable: true,
                        ..
                    })
                ),
                "{retry}"
            );
        }
        for final_error in [
            "invalid bill_type",
            "data format error",
            "missing parameter",
        ] {
            assert!(
                matches!(
                    classify_error("FAIL", final_error),
                    Err(ProviderError::Refused {
                        retryable: false,
                        ..
                    })
                ),
                "{final_error}"
            );
        }
    }

    #[test]
    fn a_body_is_told_apart_by_its_first_bytes() {
        let gzip = classify_bill_body(vec![0x1f, 0x8b, 8, 0]).unwrap();
        assert!(matches!(
            gzip,
            BillDownload::File(DownloadedBill {
                format: BillFormat::WechatGzip,
                integrity_failure: None,
                ..
            })
        ));
        let text = classify_bill_body("交易时间,公众账号ID\r\n".as_bytes().to_vec()).unwrap();
        assert!(matches!(
            text,
            BillDownload::File(DownloadedBill {
                format: BillFormat::WechatText,
                integrity_failure: None,
                ..
            })
        ));
        assert!(classify_bill_body(Vec::new()).is_err());
        assert!(classify_bill_body(b"<xml><return_code>".to_vec()).is_err());
    }
}
