//! xml.json: the CDATA terminator, CDATA/plain equivalence, pretty-printing and whitespace
//! cases. Where the libraries diverge, the protocol's rule applies (§2): a broken document is an
//! error (not axios-plugin's silent misparse) and values are never trimmed.

use paygate_wechat::xml::{self, XmlError};
use serde_json::Value;

use crate::vectors::{id, list, load, string_map, text};

/// The libraries that agree on a parse; used when all three observations are identical.
fn agreed_parse(case: &Value) -> paygate_wechat::sign::Params {
    let parsed = &case["parsed"];
    let wechatpy = string_map(&parsed["xmltodict(wechatpy)"]);
    let axios = string_map(&parsed["wechatpay-axios-plugin Transformer.toObject"]["parsed"]);
    assert_eq!(wechatpy, axios, "{}: libraries disagree", id(case));
    wechatpy
}

#[test]
fn every_xml_case_parses_as_the_protocol_says() {
    let doc = load("xml.json");
    let cases = list(&doc, "cases");
    for case in &cases {
        let body = text(case, "xml").as_bytes();
        let got = xml::parse(body);
        match id(case) {
            // The malformed output of wechatpy's and axios-plugin's builders: xmltodict and
            // xml2js reject it, and so must we (axios-plugin's parse is a silent corruption).
            "XML01_wechatpy_builder_cdata_terminator"
            | "XML02_axios_plugin_builder_cdata_terminator" => {
                assert!(case["parsed"]["xmltodict(wechatpy)"]["error"].is_string());
                assert!(
                    matches!(got, Err(XmlError::Syntax(_) | XmlError::Nested(_))),
                    "{}: {got:?}",
                    id(case)
                );
            }
            "XML03_cdata_and_plain_equivalent_a"
            | "XML04_cdata_and_plain_equivalent_b"
            | "XML05_pretty_printed" => {
                assert_eq!(got, Ok(agreed_parse(case)), "{}", id(case));
            }
            // The untrimmed reading is axios-plugin's; the trimming ones would break signatures.
            "XML06_value_with_surrounding_spaces" => {
                let untrimmed = string_map(
                    &case["parsed"]["wechatpay-axios-plugin Transformer.toObject"]["parsed"],
                );
                assert_eq!(untrimmed["attach"], "  padded  ");
                assert_eq!(got, Ok(untrimmed));
            }
            other => panic!("unhandled xml case {other}"),
        }
    }
    assert_eq!(cases.len(), 6);
}

#[test]
fn the_writer_splits_a_cdata_terminator_exactly_like_xml2js() {
    let doc = load("xml.json");
    let tenpay = text(&doc, "tenpay_buildXML_of_tricky_value");
    let expected_value_xml = tenpay
        .split_once(": ")
        .map(|(_, xml)| xml)
        .unwrap_or_else(|| panic!("unexpected note shape: {tenpay}"));
    let params: paygate_wechat::sign::Params = [("attach".to_owned(), "a]]>b<c&d".to_owned())]
        .into_iter()
        .collect();
    let written = xml::write(&params).unwrap();
    assert_eq!(
        written,
        format!("<xml><attach>{expected_value_xml}</attach></xml>")
    );
    assert_eq!(xml::parse(written.as_bytes()).unwrap(), params);
}
