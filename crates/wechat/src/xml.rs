//! The flat `<xml>` documents of the v2 API: one root, one child element per field, no
//! attributes that matter, no nesting (protocol notes §2).
//!
//! Reading is deliberately strict because notify bodies come from the internet: a DOCTYPE (and
//! with it every entity declaration, the XXE and billion-laughs vectors WeChat's 2018 advisory
//! is about) is a hard error the moment the parser meets it, before any field is read; so are
//! processing instructions, comments, nested elements, mixed content, duplicate fields, unknown
//! entity references and bodies over the size limit. Values are kept exactly as sent, CDATA or
//! plain text, without trimming (vector XML06): the signature covers the raw bytes.
//!
//! Writing wraps every value in CDATA and splits any `]]>` across two sections, as xml2js does
//! (vectors XML01/02 show wechatpy and axios-plugin producing broken documents there).

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::sign::Params;

/// The largest body accepted from WeChat by default. Notifies are about 1 KB and a refund
/// notify's `req_info` under 2 KB; "a few KB is ample" (notes §2), so 16 KiB leaves room for
/// new fields while refusing anything that is obviously not WeChat.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024;

/// Why a document was refused; each variant is one kind of malformed or hostile input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The body is larger than the limit.
    #[error("XML body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// The body is not UTF-8.
    #[error("XML body is not UTF-8")]
    NotUtf8,
    /// A DOCTYPE (and so possibly entity declarations) was present.
    #[error("XML declares a DOCTYPE or entity")]
    ForbiddenDtd,
    /// A processing instruction or comment was present; WeChat sends neither.
    #[error("XML contains a processing instruction or comment")]
    ForbiddenMarkup,
    /// An entity reference other than the five predefined ones or a character reference.
    #[error("XML refers to the undeclared entity {0:?}")]
    UnknownEntity(String),
    /// The root element is not the expected one.
    #[error("XML root element is {found:?}, expected {expected:?}")]
    WrongRoot {
        /// The expected root name.
        expected: &'static str,
        /// The name found.
        found: String,
    },
    /// A field contains an element instead of text.
    #[error("XML field {0:?} contains nested elements")]
    Nested(String),
    /// A field name appears twice.
    #[error("XML field {0:?} appears twice")]
    DuplicateField(String),
    /// Text directly inside the root, outside any field.
    #[error("XML has text outside of any field")]
    StrayText,
    /// Something after the root element closed.
    #[error("XML has content after the root element")]
    TrailingContent,
    /// The document ended before the root element closed, or had none.
    #[error("XML document is truncated")]
    Truncated,
    /// A field name that is not a plain XML name (writer side).
    #[error("field name {0:?} is not a plain XML name")]
    InvalidName(String),
    /// The underlying parser found the document not well-formed.
    #[error("XML is not well-formed: {0}")]
    Syntax(String),
}

/// Parses a flat `<xml>` document (as requests, responses and notifies use) with the default
/// size limit.
pub fn parse(body: &[u8]) -> Result<Params, XmlError> {
    parse_with_root(body, "xml", DEFAULT_MAX_BYTES)
}

/// Parses a flat document whose root element is `root` (`xml`, or `root` for the decrypted
/// refund notify), refusing bodies over `max_bytes`.
pub fn parse_with_root(
    body: &[u8],
    root: &'static str,
    max_bytes: usize,
) -> Result<Params, XmlError> {
    if body.len() > max_bytes {
        return Err(XmlError::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let mut fields = Params::new();
    let mut state = State::Prolog;
    let mut current: Option<(String, String)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::ForbiddenDtd),
            Event::PI(_) | Event::Comment(_) => return Err(XmlError::ForbiddenMarkup),
            Event::Decl(_) if state == State::Prolog => {}
            Event::Decl(_) => return Err(XmlError::ForbiddenMarkup),
            Event::Eof => {
                return match state {
                    State::Done => Ok(fields),
                    _ => Err(XmlError::Truncated),
                };
            }
            Event::Start(start) => {
                let name = start.name().as_ref().to_owned();
                match state {
                    State::Prolog => {
                        if name != root {
                            return Err(XmlError::WrongRoot {
                                expected: root,
                                found: name,
                            });
                        }
                        state = State::InRoot;
                    }
                    State::InRoot => {
                        current = Some((name, String::new()));
                        state = State::InField;
                    }
                    State::InField => {
                        let field = current.take().map(|(n, _)| n).unwrap_or_default();
                        return Err(XmlError::Nested(field));
                    }
                    State::Done => return Err(XmlError::TrailingContent),
                }
            }
            Event::Empty(start) => {
                let name = start.name().as_ref().to_owned();
                match state {
                    State::InRoot => insert(&mut fields, name, String::new())?,
                    State::InField => {
                        let field = current.take().map(|(n, _)| n).unwrap_or_default();
                        return Err(XmlError::Nested(field));
                    }
                    State::Prolog => {
                        return Err(XmlError::WrongRoot {
                            expected: root,
                            found: name,
                        });
                    }
                    State::Done => return Err(XmlError::TrailingContent),
                }
            }
            Event::End(_) => match state {
                State::InField => {
                    if let Some((name, value)) = current.take() {
                        insert(&mut fields, name, value)?;
                    }
                    state = State::InRoot;
                }
                State::InRoot => state = State::Done,
                // check_end_names makes the parser itself refuse an unmatched end tag.
                State::Prolog | State::Done => return Err(XmlError::TrailingContent),
            },
            Event::Text(content) => {
                let raw = content.into_inner();
                match (&state, current.as_mut()) {
                    (State::InField, Some((_, value))) => value.push_str(&raw),
                    // Indentation between fields (vector XML05) and around the root.
                    _ if raw.bytes().all(|b| b.is_ascii_whitespace()) => {}
                    (State::InRoot, _) => return Err(XmlError::StrayText),
                    _ => return Err(XmlError::TrailingContent),
                }
            }
            Event::CData(content) => match (&state, current.as_mut()) {
                (State::InField, Some((_, value))) => value.push_str(&content.into_inner()),
                (State::InRoot, _) => return Err(XmlError::StrayText),
                _ => return Err(XmlError::TrailingContent),
            },
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                match (&state, current.as_mut()) {
                    (State::InField, Some((_, value))) => value.push(resolved),
                    (State::InRoot, _) => return Err(XmlError::StrayText),
                    _ => return Err(XmlError::TrailingContent),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Prolog,
    InRoot,
    InField,
    Done,
}

fn insert(fields: &mut Params, name: String, value: String) -> Result<(), XmlError> {
    if fields.contains_key(&name) {
        return Err(XmlError::DuplicateField(name));
    }
    fields.insert(name, value);
    Ok(())
}

/// The five predefined entities and character references; anything else could only have come
/// from a DTD, which is refused.
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<char, XmlError> {
    if let Some(ch) = reference
        .resolve_char_ref()
        .map_err(|e| XmlError::Syntax(e.to_string()))?
    {
        return Ok(ch);
    }
    match &**reference {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        other => Err(XmlError::UnknownEntity(other.to_owned())),
    }
}

/// Writes a flat `<xml>` document with every value in CDATA (fields in byte order, `sign` where
/// it falls). Field names must be plain XML names (`[A-Za-z_][A-Za-z0-9_.-]*`).
pub fn write(params: &Params) -> Result<String, XmlError> {
    write_pairs("xml", params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Writes a flat document with root `root` from fields in the given order.
pub fn write_pairs<'a, I>(root: &str, fields: I) -> Result<String, XmlError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    check_name(root)?;
    let mut out = String::with_capacity(256);
    out.push('<');
    out.push_str(root);
    out.push('>');
    for (name, value) in fields {
        check_name(name)?;
        out.push('<');
        out.push_str(name);
        out.push('>');
        push_cdata(&mut out, value);
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    Ok(out)
}

/// Appends `value` as CDATA; each `]]>` is split as `]]` + `>` across two sections, so any
/// string survives the round trip.
fn push_cdata(out: &mut String, value: &str) {
    out.push_str("<![CDATA[");
    let mut rest = value;
    while let Some(at) = rest.find("]]>") {
        out.push_str(&rest[..at + 2]);
        out.push_str("]]><![CDATA[");
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out.push_str("]]>");
}

fn check_name(name: &str) -> Result<(), XmlError> {
    let mut bytes = name.bytes();
    let valid_start = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let valid_rest = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid_start && valid_rest {
        Ok(())
    } else {
        Err(XmlError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn predefined_and_character_references_are_decoded() {
        let got = parse(b"<xml><a>x &amp; y &lt;&gt;&quot;&apos; &#x4E2D;&#25991;</a></xml>");
        assert_eq!(got, Ok(map(&[("a", "x & y <>\"' 中文")])));
    }

    #[test]
    fn undeclared_entities_are_refused() {
        assert_eq!(
            parse(b"<xml><a>&xxe;</a></xml>"),
            Err(XmlError::UnknownEntity("xxe".into()))
        );
    }

    #[test]
    fn a_billion_laughs_document_is_refused_at_the_doctype() {
        let body = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<xml><a>&lol2;</a></xml>"#;
        assert_eq!(parse(body), Err(XmlError::ForbiddenDtd));
    }

    #[test]
    fn nesting_duplicates_and_stray_text_each_have_their_own_error() {
        assert_eq!(
            parse(b"<xml><a><b>1</b></a></xml>"),
            Err(XmlError::Nested("a".into()))
        );
        assert_eq!(
            parse(b"<xml><a>1</a><a>2</a></xml>"),
            Err(XmlError::DuplicateField("a".into()))
        );
        assert_eq!(parse(b"<xml>hi<a>1</a></xml>"), Err(XmlError::StrayText));
        assert_eq!(
            parse(b"<xml><a>1</a></xml><xml></xml>"),
            Err(XmlError::TrailingContent)
        );
        assert_eq!(parse(b"<xml><a>1</a>"), Err(XmlError::Truncated));
        assert_eq!(parse(b""), Err(XmlError::Truncated));
        assert!(matches!(
            parse(b"<root><a>1</a></root>"),
            Err(XmlError::WrongRoot { .. })
        ));
        assert_eq!(
            parse(b"<xml><!-- hi --><a>1</a></xml>"),
            Err(XmlError::ForbiddenMarkup)
        );
        assert_eq!(
            parse(b"<xml><?php echo 1 ?><a>1</a></xml>"),
            Err(XmlError::ForbiddenMarkup)
        );
        assert_eq!(parse(&[0xff, 0xfe]), Err(XmlError::NotUtf8));
    }

    #[test]
    fn bodies_over_the_limit_are_refused_before_parsing() {
        let body = vec![b' '; 100];
        assert_eq!(
            parse_with_root(&body, "xml", 99),
            Err(XmlError::TooLarge {
                size: 100,
                limit: 99
            })
        );
    }

    #[test]
    fn empty_elements_read_as_empty_values() {
        assert_eq!(
            parse(b"<xml><a/><b></b></xml>"),
            Ok(map(&[("a", ""), ("b", "")]))
        );
    }

    #[test]
    fn the_writer_refuses_names_that_are_not_plain_xml_names() {
        for bad in ["", "a b", "<a>", "1a", "a&b"] {
            assert_eq!(
                write(&map(&[(bad, "v")])),
                Err(XmlError::InvalidName(bad.into()))
            );
        }
    }

    proptest! {
        #[test]
        fn any_string_map_survives_write_then_read(
            fields in proptest::collection::btree_map(
                "[A-Za-z_][A-Za-z0-9_]{0,15}",
                "(\\PC|[ \\t\\n\\r]|]]>|]]|&|<|>|中文|🎉|&amp;)*",
                0..10,
            )
        ) {
            let written = write(&fields).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let read = parse_with_root(written.as_bytes(), "xml", usize::MAX)
                .map_err(|e| TestCaseError::fail(format!("{e}: {written}")))?;
            prop_assert_eq!(read, fields);
        }

        #[test]
        fn the_parser_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn the_parser_never_panics_on_xml_like_text(body in "(<|>|/|xml|a|!|\\[|CDATA|]|&|;|#|\\?|-| |\"|=)*") {
            let _ = parse(body.as_bytes());
        }
    }
}
