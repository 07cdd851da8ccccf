//! Certificate mode ("公钥证书"): the `app_cert_sn` and `alipay_root_cert_sn` request
//! parameters, and the Alipay public key taken from its certificate.
//!
//! `SN = lowercase hex MD5(issuer DN + serial in decimal)`, where the issuer DN is Java's
//! `X500Principal.getName()` (RFC 2253): RDNs in reverse of their encoding order, `,` without
//! spaces, RFC 2253 escaping, unknown attribute types as `OID=#hex`. The root SN joins, with
//! `_` and in file order, the SNs of the bundle's certificates signed with an RSA algorithm
//! (OID under `1.2.840.113549.1.1`); EC/SM2 roots are skipped. Certificates are parsed with
//! `x509-parser` (Rusticata, fuzzed and widely used) rather than a hand-written DER walk,
//! because the DN rendering needs every attribute and string type handled correctly.

use md5::{Digest, Md5};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::AlipayError;
use crate::keys::VerifyingKey;

/// The OID arc of the PKCS#1 RSA signature algorithms.
const RSA_SIGNATURE_ARC: &str = "1.2.840.113549.1.1";

fn cert_error(what: &'static str, reason: impl Into<String>) -> AlipayError {
    AlipayError::Certificate {
        what,
        reason: reason.into(),
    }
}

/// Splits PEM text into the DER of each `CERTIFICATE` block, in file order.
fn certificate_ders(what: &'static str, pem_text: &str) -> Result<Vec<Vec<u8>>, AlipayError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| cert_error(what, e.to_string()))?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(cert_error(what, "no PEM CERTIFICATE block found"));
    }
    Ok(ders)
}

fn parse_der<'a>(what: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, AlipayError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| cert_error(what, e.to_string()))
}

fn escape_rfc2253(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (index, ch) in value.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (index == 0 && matches!(ch, '#' | ' '))
            || (index == last && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
}

/// The RFC 2253 keyword of the attribute types Java names; others are written as OIDs.
fn rfc2253_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend(bytes);
    }
}

fn write_attribute(attribute: &AttributeTypeAndValue<'_>, out: &mut String) {
    let oid = attribute.attr_type().to_id_string();
    let value = attribute.attr_value();
    let text = match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::T61String
        | Tag::VisibleString => std::str::from_utf8(value.data).ok().map(str::to_owned),
        Tag::BmpString => {
            let units: Vec<u16> = value
                .data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match (rfc2253_keyword(&oid), text) {
        (Some(keyword), Some(text)) => {
            out.push_str(keyword);
            out.push('=');
            escape_rfc2253(&text, out);
        }
        // Java writes unnamed types (and values it cannot show) as OID=#<DER hex>.
        (keyword, _) => {
            out.push_str(keyword.unwrap_or(&oid));
            out.push_str("=#");
            let mut der = vec![u8::try_from(value.tag().0).unwrap_or(0)];
            der_length(value.data.len(), &mut der);
            der.extend_from_slice(value.data);
            out.push_str(&hex::encode(der));
        }
    }
}

/// The issuer as Java's `getIssuerX500Principal().getName()` writes it (RFC 2253).
pub fn rfc2253_name(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (index, rdn) in rdns.iter().rev().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for (position, attribute) in rdn.iter().enumerate() {
            if position > 0 {
                out.push('+');
            }
            write_attribute(attribute, &mut out);
        }
    }
    out
}

fn preimage_of(cert: &X509Certificate<'_>) -> String {
    format!(
        "{}{}",
        rfc2253_name(cert.issuer()),
        cert.tbs_certificate.serial
    )
}

fn sn_of(cert: &X509Certificate<'_>) -> String {
    hex::encode(Md5::digest(preimage_of(cert).as_bytes()))
}

/// The text a certificate's SN is the MD5 of (issuer DN + decimal serial); for diagnosing an
/// SN that Alipay rejects.
pub fn cert_sn_preimage(what: &'static str, pem_text: &str) -> Result<String, AlipayError> {
    let ders = certificate_ders(what, pem_text)?;
    let der = ders.first().ok_or_else(|| cert_error(what, "empty"))?;
    Ok(preimage_of(&parse_der(what, der)?))
}

/// The SN of a single certificate in PEM (`app_cert_sn`, or the Alipay cert's SN that responses
/// name in `alipay_cert_sn`).
pub fn cert_sn(what: &'static str, pem_text: &str) -> Result<String, AlipayError> {
    let preimage = cert_sn_preimage(what, pem_text)?;
    Ok(hex::encode(Md5::digest(preimage.as_bytes())))
}

/// `alipay_root_cert_sn`: the SNs of the RSA-signed roots in the bundle, joined with `_`.
pub fn root_cert_sn(pem_text: &str) -> Result<String, AlipayError> {
    const WHAT: &str = "alipay_root_cert";
    let mut sns = Vec::new();
    for der in certificate_ders(WHAT, pem_text)? {
        let cert = parse_der(WHAT, &der)?;
        let algorithm = cert.signature_algorithm.algorithm.to_id_string();
        if algorithm.starts_with(RSA_SIGNATURE_ARC) {
            sns.push(sn_of(&cert));
        }
    }
    if sns.is_empty() {
        return Err(cert_error(WHAT, "the bundle holds no RSA-signed root"));
    }
    Ok(sns.join("_"))
}

/// The RSA public key inside a certificate (the Alipay public-key certificate in PEM), for
/// verifying notifies and responses in certificate mode.
pub fn cert_public_key(what: &'static str, pem_text: &str) -> Result<VerifyingKey, AlipayError> {
    let ders = certificate_ders(what, pem_text)?;
    let der = ders.first().ok_or_else(|| cert_error(what, "empty"))?;
    let cert = parse_der(what, der)?;
    VerifyingKey::from_spki_der(cert.public_key().raw)
}

/// Everything certificate mode derives from the three certificate files, computed once.
#[derive(Debug)]
pub struct CertMaterial {
    /// Sent as `app_cert_sn`.
    pub app_cert_sn: String,
    /// Sent as `alipay_root_cert_sn`.
    pub alipay_root_cert_sn: String,
    /// The SN of the Alipay certificate; responses naming another one were signed by a key
    /// we do not hold (Alipay rotated its certificate).
    pub alipay_cert_sn: String,
    /// The key from the Alipay public-key certificate.
    pub alipay_key: VerifyingKey,
}

impl CertMaterial {
    /// Derives the SNs and the verification key from the PEM texts of the app certificate, the
    /// Alipay public-key certificate and Alipay's root bundle.
    pub fn from_pems(
        app_cert: &str,
        alipay_cert: &str,
        alipay_root_cert: &str,
    ) -> Result<CertMaterial, AlipayError> {
        Ok(CertMaterial {
            app_cert_sn: cert_sn("app_cert", app_cert)?,
            alipay_root_cert_sn: root_cert_sn(alipay_root_cert)?,
            alipay_cert_sn: cert_sn("alipay_cert", alipay_cert)?,
            alipay_key: cert_public_key("alipay_cert", alipay_cert)?,
        })
    }
}
