//! Text codecs the protocols need: strict GBK/UTF-8 decoding, `application/x-www-form-urlencoded` in GBK or
//! UTF-8, query strings, a strict XML reader over quick-xml (no DOCTYPE, no entities beyond XML's five, bounded depth),
//! and Beijing-time timestamps.

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;
use recharge_core::Timestamp;
use serde::{Deserialize, Serialize};
use time::format_description::BorrowedFormatItem;
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A text decoding or parsing failure. Callers map it to `Unknown` (responses) or a refused callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("bytes are not valid {0}")]
    Malformed(&'static str),
    #[error("text contains a character the charset cannot encode")]
    Unencodable,
    #[error("bad percent-encoding")]
    Percent,
    #[error("XML refused: {0}")]
    Xml(&'static str),
    #[error("XML malformed: {0}")]
    XmlSyntax(String),
    #[error("body of {size} bytes is over the cap of {cap}")]
    TooLarge { size: usize, cap: usize },
}

/// The charset of a form body or of undeclared text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    Gbk,
    #[serde(alias = "utf-8")]
    Utf8,
}

impl Charset {
    /// The label used in `Content-Type: …;charset=`.
    pub fn label(self) -> &'static str {
        match self {
            Charset::Gbk => "gbk",
            Charset::Utf8 => "utf-8",
        }
    }

    /// Encodes text, refusing characters the charset cannot represent.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, CodecError> {
        match self {
            Charset::Utf8 => Ok(text.as_bytes().to_vec()),
            Charset::Gbk => crate::sign::gbk_bytes(text).map_err(|_| CodecError::Unencodable),
        }
    }

    /// Decodes strictly: malformed sequences are an error, never replaced.
    pub fn decode(self, bytes: &[u8]) -> Result<String, CodecError> {
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| CodecError::Malformed("UTF-8")),
            // encoding_rs's GBK decoder is the GB18030 decoder, a superset of GB2312 and GBK.
            Charset::Gbk => encoding_rs::GBK
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned())
                .ok_or(CodecError::Malformed("GBK")),
        }
    }
}

/// Refuses a body over `cap` bytes before anything looks at its content.
pub fn check_cap(body: &[u8], cap: usize) -> Result<(), CodecError> {
    if body.len() > cap {
        return Err(CodecError::TooLarge {
            size: body.len(),
            cap,
        });
    }
    Ok(())
}

/// Percent-encodes bytes as `application/x-www-form-urlencoded` does (Java `URLEncoder`, WHATWG's
/// serializer): `A-Za-z0-9*-._` stay, space becomes `+`, everything else `%XX` uppercase.
pub fn percent_encode(bytes: &[u8]) -> String {
    form_urlencoded::byte_serialize(bytes).collect()
}

/// Encodes `k=v&…` in the given charset, keeping the pair order given.
pub fn encode_form(pairs: &[(&str, &str)], charset: Charset) -> Result<String, CodecError> {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(&charset.encode(k)?));
        out.push('=');
        out.push_str(&percent_encode(&charset.encode(v)?));
    }
    Ok(out)
}

/// `+` is a space and `%XX` a byte. percent-encoding passes a malformed `%G1` through as it is; a form whose
/// signature we check must not be readable two ways, so a `%` not followed by two hex digits is an error.
fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(CodecError::Percent);
    }
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Ok(percent_encoding::percent_decode(&spaced).collect())
}

/// Parses a form body or query string: percent-decodes each part to bytes, then decodes those bytes strictly
/// in `charset` (a GBK form decoded as UTF-8 would corrupt 江苏 silently; here it is an error).
pub fn parse_form(bytes: &[u8], charset: Charset) -> Result<Vec<(String, String)>, CodecError> {
    let mut out = Vec::new();
    for part in bytes.split(|&b| b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        let k = charset.decode(&percent_decode(k)?)?;
        let v = charset.decode(&percent_decode(v)?)?;
        out.push((k, v));
    }
    Ok(out)
}

/// The first value of `key` in parsed pairs.
pub fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A JSON object with string values in exactly the given field order (serde_json's map would sort them, and
/// protocols that sign the body must sign the bytes they send).
pub fn ordered_json(fields: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String((*k).to_owned()).to_string());
        out.push(':');
        out.push_str(&serde_json::Value::String((*v).to_owned()).to_string());
    }
    out.push('}');
    out
}

/// Beijing time: UTC+8 all year (no DST).
const BEIJING: UtcOffset = offset!(+8);
/// `yyyyMMddHHmmss`.
const COMPACT: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day][hour][minute][second]");

/// `yyyyMMddHHmmss` in Beijing time, as the 001 family wants `spordertime`. Instants outside the calendar's
/// years ±9999 (no clock gives one) are clamped to its ends.
pub fn beijing_compact(ts: Timestamp) -> String {
    let t = OffsetDateTime::from_unix_timestamp(ts.seconds())
        .ok()
        .and_then(|t| t.checked_to_offset(BEIJING))
        .unwrap_or_else(|| {
            if ts.seconds() < 0 {
                PrimitiveDateTime::MIN
            } else {
                PrimitiveDateTime::MAX
            }
            .assume_offset(BEIJING)
        });
    // Cannot fail: the date-time has every component the description names, and it is written to a String.
    t.format(COMPACT).unwrap_or_default()
}

/// One XML element: its name, its text (concatenated, entity-decoded, untrimmed) and its child elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The trimmed text of the first child called `name`, if present.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.trim())
    }
}

const MAX_XML_DEPTH: usize = 8;

/// Decodes an XML response with quick-xml. The charset comes from the declaration (`GB2312`, `GBK`,
/// `GB18030` → GBK; `UTF-8`), else `default`; the body is decoded strictly before quick-xml reads it.
/// Refuses DOCTYPE (so entity declarations), processing instructions, references other than XML's five and
/// character references, a byte order mark and nesting deeper than [`MAX_XML_DEPTH`]: a provider answer is a
/// flat record and anything richer is suspect. CDATA sections are read as literal text (some platforms wrap
/// `remark1` or product names in them). Text is kept as written (no end-of-line normalisation), as the
/// hand-written reader before it did. The body's size is capped by the caller ([`check_cap`]) before this.
pub fn parse_xml(bytes: &[u8], default: Charset) -> Result<Element, CodecError> {
    // quick-xml strips a UTF-8 byte order mark silently; the reader before it refused one, and so do we
    // (a BOM would also contradict a declared GB2312).
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(CodecError::Xml("byte order mark"));
    }
    let charset = declared_charset(bytes)?.unwrap_or(default);
    let text = charset.decode(bytes)?;
    read_tree(&text)
}

/// The encoding named by a leading `<?xml … encoding="…"?>`, read by quick-xml from the declaration alone
/// (it is ASCII whatever the body's charset). `None` without a declaration or without `encoding`.
fn declared_charset(bytes: &[u8]) -> Result<Option<Charset>, CodecError> {
    let head = &bytes[..bytes.len().min(200)];
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if !head[start..].starts_with(b"<?xml") {
        return Ok(None);
    }
    let Some(end) = head.windows(2).position(|w| w == b"?>") else {
        return Err(CodecError::Xml("unterminated declaration"));
    };
    let decl = std::str::from_utf8(&head[start..end + 2])
        .map_err(|_| CodecError::Xml("bad declaration"))?;
    let mut reader = Reader::from_str(decl);
    let decl = match reader.read_event() {
        Ok(Event::Decl(d)) => d,
        // `<?xml-stylesheet …?>` and the like: not a declaration; the tree reader refuses it.
        Ok(_) => return Ok(None),
        Err(_) => return Err(CodecError::Xml("bad declaration")),
    };
    let Some(label) = decl.encoding() else {
        return Ok(None);
    };
    let label = label.map_err(|_| CodecError::Xml("bad declaration"))?;
    match label.to_ascii_lowercase().as_str() {
        "gb2312" | "gbk" | "gb18030" => Ok(Some(Charset::Gbk)),
        "utf-8" | "utf8" => Ok(Some(Charset::Utf8)),
        _ => Err(CodecError::Xml("unsupported declared encoding")),
    }
}

/// Builds the element tree from quick-xml's events, enforcing the rules [`parse_xml`] names.
fn read_tree(text: &str) -> Result<Element, CodecError> {
    let mut reader = Reader::from_str(text);
    // Open elements, innermost last; the root once it has closed.
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    // Anything but whitespace read yet: a declaration is allowed only before that.
    let mut started = false;
    loop {
        let event = reader.read_event().map_err(syntax)?;
        let blank = matches!(&event, Event::Text(t) if t.trim_ascii().is_empty());
        let declaration_allowed = !started;
        started |= !blank;
        match event {
            Event::Decl(_) if declaration_allowed => {}
            Event::Decl(_) => {
                return Err(CodecError::Xml("processing instructions are not allowed"));
            }
            Event::DocType(_) => {
                return Err(if open.is_empty() {
                    CodecError::Xml("DOCTYPE or declarations are not allowed")
                } else {
                    CodecError::Xml("markup declarations are not allowed")
                });
            }
            Event::PI(_) => {
                return Err(if open.is_empty() {
                    CodecError::Xml("processing instructions are not allowed")
                } else {
                    CodecError::Xml("markup declarations are not allowed")
                });
            }
            Event::Comment(_) => {}
            Event::Start(start) => {
                let el = open_element(&start, root.is_some(), open.len())?;
                open.push(el);
            }
            Event::Empty(start) => {
                let el = open_element(&start, root.is_some(), open.len())?;
                close_into(el, &mut open, &mut root);
            }
            Event::End(_) => {
                // quick-xml has checked that the name matches the open element.
                let el = open.pop().ok_or(CodecError::Xml("mismatched end tag"))?;
                close_into(el, &mut open, &mut root);
            }
            Event::Text(t) => match open.last_mut() {
                Some(el) => el.text.push_str(&t),
                None if t.trim_ascii().is_empty() => {}
                None if root.is_some() => {
                    return Err(CodecError::Xml("content after the root element"));
                }
                None => return Err(CodecError::Xml("expected an element")),
            },
            Event::CData(c) => match open.last_mut() {
                Some(el) => el.text.push_str(&c),
                None => return Err(CodecError::Xml("expected an element")),
            },
            Event::GeneralRef(r) => {
                let c = resolve_reference(&r)?;
                match open.last_mut() {
                    Some(el) => el.text.push(c),
                    None => return Err(CodecError::Xml("expected an element")),
                }
            }
            Event::Eof => {
                return match (open.is_empty(), root) {
                    (true, Some(root)) => Ok(root),
                    (true, None) => Err(CodecError::Xml("expected an element")),
                    (false, _) => Err(CodecError::Xml("eof")),
                };
            }
        }
    }
}

/// A new element for a start tag at nesting `depth`, after checking that it may open there and that its
/// attributes (skipped: no provider puts data in them) hide no entity.
fn open_element(
    start: &BytesStart<'_>,
    root_closed: bool,
    depth: usize,
) -> Result<Element, CodecError> {
    if root_closed {
        return Err(CodecError::Xml("content after the root element"));
    }
    if depth > MAX_XML_DEPTH {
        return Err(CodecError::Xml("nesting too deep"));
    }
    for attr in start.attributes() {
        let attr = attr.map_err(|_| CodecError::Xml("bad attribute"))?;
        attr.normalized_value(XmlVersion::Implicit1_0)
            .map_err(|_| CodecError::Xml("entities are not allowed"))?;
    }
    Ok(Element {
        name: start.name().as_ref().to_owned(),
        ..Element::default()
    })
}

/// Hands a closed element to its parent, or makes it the root.
fn close_into(el: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// `&amp;` and the other four of XML's own, and character references; any other entity is refused (none can
/// be declared: DOCTYPE is refused).
fn resolve_reference(r: &BytesRef<'_>) -> Result<char, CodecError> {
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|_| CodecError::Xml("bad character reference"))?
    {
        return Ok(c);
    }
    match resolve_predefined_entity(r) {
        Some(s) => s
            .chars()
            .next()
            .ok_or(CodecError::Xml("entities are not allowed")),
        None => Err(CodecError::Xml("entities are not allowed")),
    }
}

fn syntax(e: quick_xml::Error) -> CodecError {
    CodecError::XmlSyntax(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gbk_form_encoding_matches_the_worked_electricity_example() {
        let account = r#"{"product_type":"3","userid":"123123123","username":"","type":"1","area":"江苏","city":"南京"}"#;
        let enc = percent_encode(&Charset::Gbk.encode(account).unwrap());
        assert!(enc.starts_with("%7B%22product_type%22%3A%223%22"));
        assert!(
            enc.ends_with("%22area%22%3A%22%BD%AD%CB%D5%22%2C%22city%22%3A%22%C4%CF%BE%A9%22%7D")
        );
        assert_eq!(
            enc,
            "%7B%22product_type%22%3A%223%22%2C%22userid%22%3A%22123123123%22%2C%22username%22%3A%22%22%2C%22type%22%3A%221%22%2C%22area%22%3A%22%BD%AD%CB%D5%22%2C%22city%22%3A%22%C4%CF%BE%A9%22%7D"
        );
    }

    #[test]
    fn gbk_form_round_trips_and_utf8_reading_of_gbk_is_refused() {
        let body = encode_form(&[("area", "江苏"), ("x", "a b&c")], Charset::Gbk).unwrap();
        assert_eq!(body, "area=%BD%AD%CB%D5&x=a+b%26c");
        let pairs = parse_form(body.as_bytes(), Charset::Gbk).unwrap();
        assert_eq!(field(&pairs, "area"), Some("江苏"));
        assert_eq!(field(&pairs, "x"), Some("a b&c"));
        assert!(parse_form(body.as_bytes(), Charset::Utf8).is_err());
        assert!(parse_form(b"a=%G1", Charset::Utf8).is_err());
        assert!(Charset::Gbk.encode("emoji 😀").is_err());
    }

    #[test]
    fn ordered_json_keeps_order_and_escapes() {
        assert_eq!(
            ordered_json(&[("b", "1"), ("a", "say \"hi\"\n江")]),
            r#"{"b":"1","a":"say \"hi\"\n江"}"#
        );
        assert_eq!(ordered_json(&[]), "{}");
    }

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        // 2021-02-24 05:45:52 UTC = 13:45:52 Beijing.
        assert_eq!(
            beijing_compact(Timestamp::from_millis(1_614_145_552_000)),
            "20210224134552"
        );
        assert_eq!(beijing_compact(Timestamp::from_millis(0)), "19700101080000");
        // A leap day, and the Beijing date running a day ahead of UTC's.
        assert_eq!(
            beijing_compact(Timestamp::from_millis(951_839_999_000)),
            "20000229235959"
        );
        assert_eq!(
            beijing_compact(Timestamp::from_millis(951_868_800_000)),
            "20000301080000"
        );
        assert_eq!(
            beijing_compact(Timestamp::from_millis(i64::MAX)),
            "99991231235959"
        );
    }

    #[test]
    fn gb2312_declared_gbk_xml_is_decoded() {
        let mut xml = b"<?xml version=\"1.0\" encoding=\"GB2312\"?><order><productname>".to_vec();
        xml.extend(Charset::Gbk.encode("游戏直充").unwrap());
        xml.extend(b"</productname><resultno>0</resultno><ordercash/></order>");
        let root = parse_xml(&xml, Charset::Utf8).unwrap();
        assert_eq!(root.name, "order");
        assert_eq!(root.child_text("productname"), Some("游戏直充"));
        assert_eq!(root.child_text("resultno"), Some("0"));
        assert_eq!(root.child_text("ordercash"), Some(""));
    }

    #[test]
    fn xml_with_doctype_or_entities_is_refused() {
        let bomb = b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">]><order><r>&lol;</r></order>";
        assert_eq!(
            parse_xml(bomb, Charset::Utf8),
            Err(CodecError::Xml("DOCTYPE or declarations are not allowed"))
        );
        assert!(parse_xml(b"<order><r>&lol;</r></order>", Charset::Utf8).is_err());
        // CDATA is literal text: markup and entity-like text inside it stay as they are.
        assert_eq!(
            parse_xml(
                b"<order><r><![CDATA[x<y>&lol;]]></r></order>",
                Charset::Utf8
            )
            .unwrap()
            .child_text("r"),
            Some("x<y>&lol;")
        );
        assert!(
            parse_xml(
                b"<order><r><![CDATA[never closed</r></order>",
                Charset::Utf8
            )
            .is_err()
        );
        assert_eq!(
            parse_xml(b"<order><r>a&amp;b&#x41;</r></order>", Charset::Utf8)
                .unwrap()
                .child_text("r"),
            Some("a&bA")
        );
        assert!(parse_xml(b"<order><r>1</r></order><x/>", Charset::Utf8).is_err());
        assert!(parse_xml(b"<order><r>1</x></order>", Charset::Utf8).is_err());
        let deep = "<a>".repeat(20) + &"</a>".repeat(20);
        assert!(parse_xml(deep.as_bytes(), Charset::Utf8).is_err());
    }

    #[test]
    fn a_declaration_is_read_after_leading_blanks_and_refused_anywhere_else() {
        let ok = b"  \n<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<order><r>1</r></order>\n";
        assert_eq!(
            parse_xml(ok, Charset::Gbk).unwrap().child_text("r"),
            Some("1")
        );
        for bad in [
            &b"<!--c--><?xml version=\"1.0\"?><order/>"[..],
            b"<order><?xml version=\"1.0\"?></order>",
            b"<?pi x?><order/>",
            b"<order><?pi x?></order>",
            b"<order/><?pi x?>",
        ] {
            assert!(parse_xml(bad, Charset::Utf8).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_xml(
                b"<?xml version=\"1.0\" encoding=\"Big5\"?><a/>",
                Charset::Utf8
            ),
            Err(CodecError::Xml("unsupported declared encoding"))
        );
        assert_eq!(
            parse_xml(b"<?xml version=\"1.0\" encoding=\"GB2312\"", Charset::Utf8),
            Err(CodecError::Xml("unterminated declaration"))
        );
    }

    #[test]
    fn a_byte_order_mark_is_refused_as_before_quick_xml() {
        // quick-xml would strip it silently; a BOM beside a declared GB2312 could only be a lie.
        assert_eq!(
            parse_xml(b"\xEF\xBB\xBF<order/>", Charset::Utf8),
            Err(CodecError::Xml("byte order mark"))
        );
    }

    #[test]
    fn comments_are_skipped_and_text_around_them_is_joined() {
        let root = parse_xml(
            b"<!--a--><order><!--b--><r>1<!--c-->2</r></order><!--d-->",
            Charset::Utf8,
        )
        .unwrap();
        assert_eq!(root.child_text("r"), Some("12"));
        assert_eq!(root.children.len(), 1);
    }

    #[test]
    fn text_is_kept_as_written_without_end_of_line_normalisation() {
        // The reader before quick-xml kept `\r\n`; quick-xml's own `xml_content` would make it `\n`.
        let root = parse_xml(b"<order><r> a\r\nb </r></order>", Charset::Utf8).unwrap();
        assert_eq!(root.children[0].text, " a\r\nb ");
        assert_eq!(root.child_text("r"), Some("a\r\nb"));
    }

    #[test]
    fn attributes_are_skipped_but_may_not_hide_entities() {
        let root = parse_xml(
            b"<order v=\"1\" w='&amp;'><r k=\"x\">1</r></order>",
            Charset::Utf8,
        )
        .unwrap();
        assert_eq!(root.child_text("r"), Some("1"));
        assert!(parse_xml(b"<order v=\"&lol;\"/>", Charset::Utf8).is_err());
        assert!(parse_xml(b"<order v=1/>", Charset::Utf8).is_err());
        // quick-xml also refuses a repeated attribute, which the reader before it let through.
        assert!(parse_xml(b"<order v=\"1\" v=\"2\"/>", Charset::Utf8).is_err());
    }

    #[test]
    fn character_references_are_read_but_nul_and_signed_ones_are_refused() {
        let root = parse_xml(
            b"<o><r>&#65;&#x6C5F;&lt;&gt;&quot;&apos;</r></o>",
            Charset::Utf8,
        )
        .unwrap();
        assert_eq!(root.child_text("r"), Some("A江<>\"'"));
        // Both were accepted by the reader before quick-xml; XML forbids them.
        assert!(parse_xml(b"<o><r>&#0;</r></o>", Charset::Utf8).is_err());
        assert!(parse_xml(b"<o><r>&#+65;</r></o>", Charset::Utf8).is_err());
        assert!(parse_xml(b"<o><r>a & b</r></o>", Charset::Utf8).is_err());
    }

    #[test]
    fn nesting_of_nine_levels_is_read_and_ten_are_refused() {
        let nested = |n: usize| "<a>".repeat(n) + &"</a>".repeat(n);
        assert!(parse_xml(nested(MAX_XML_DEPTH + 1).as_bytes(), Charset::Utf8).is_ok());
        assert_eq!(
            parse_xml(nested(MAX_XML_DEPTH + 2).as_bytes(), Charset::Utf8),
            Err(CodecError::Xml("nesting too deep"))
        );
    }

    #[test]
    fn truncated_or_rootless_documents_are_refused() {
        for bad in [
            &b""[..],
            b"   ",
            b"<!--only a comment-->",
            b"<order><r>1</r>",
            b"<order><r>1</r></order",
            b"text<order/>",
            b"<order/>text",
            b"<order><r>1</r></order></order>",
            b"<order><r>1</R></order>",
        ] {
            assert!(parse_xml(bad, Charset::Utf8).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn undeclared_xml_is_read_in_the_default_charset_strictly() {
        let mut gbk = b"<order><r>".to_vec();
        gbk.extend(Charset::Gbk.encode("充值成功").unwrap());
        gbk.extend(b"</r></order>");
        assert_eq!(
            parse_xml(&gbk, Charset::Gbk).unwrap().child_text("r"),
            Some("充值成功")
        );
        assert_eq!(
            parse_xml(&gbk, Charset::Utf8),
            Err(CodecError::Malformed("UTF-8"))
        );
    }

    #[test]
    fn bodies_over_the_cap_are_refused() {
        assert!(check_cap(&[0; 10], 10).is_ok());
        assert_eq!(
            check_cap(&[0; 11], 10),
            Err(CodecError::TooLarge { size: 11, cap: 10 })
        );
    }

    /// Element trees as a provider could send them: short names, text with markup characters and Chinese,
    /// at most the depth the reader allows.
    fn xml_tree() -> impl Strategy<Value = Element> {
        let text = "[a-z0-9 <>&'\"江苏充值\r\n]{0,8}";
        let leaf = ("[a-z][a-z0-9_]{0,5}", text).prop_map(|(name, text)| Element {
            name,
            text,
            children: Vec::new(),
        });
        leaf.prop_recursive(MAX_XML_DEPTH as u32, 48, 4, move |inner| {
            (
                "[a-z][a-z0-9_]{0,5}",
                text,
                proptest::collection::vec(inner, 0..4),
            )
                .prop_map(|(name, text, children)| Element {
                    name,
                    text,
                    children,
                })
        })
    }

    /// Writes `el` with its text first (escaped, or as CDATA when it has no `]]>`), then its children.
    fn write_xml(el: &Element, out: &mut String) {
        if el.text.is_empty() && el.children.is_empty() {
            out.push_str(&format!("<{}/>", el.name));
            return;
        }
        out.push_str(&format!("<{}>", el.name));
        if el.text.len().is_multiple_of(2) {
            out.push_str(&el.text.replace('&', "&amp;").replace('<', "&lt;"));
        } else {
            out.push_str(&format!("<![CDATA[{}]]>", el.text));
        }
        for c in &el.children {
            write_xml(c, out);
        }
        out.push_str(&format!("</{}>", el.name));
    }

    proptest! {
        #[test]
        fn xml_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_xml(&bytes, Charset::Gbk);
            let _ = parse_xml(&bytes, Charset::Utf8);
        }

        #[test]
        fn xml_like_text_never_panics(s in "(<[a-z/!?]{0,3}|[a-z0-9]{0,3}|&[a-z#x0-9]{0,4};?|>|\"| ){0,40}") {
            let _ = parse_xml(s.as_bytes(), Charset::Utf8);
        }

        #[test]
        fn generated_documents_read_back_as_the_tree_written(tree in xml_tree(), decl in any::<bool>()) {
            let mut doc = String::new();
            if decl {
                doc.push_str("<?xml version=\"1.0\" encoding=\"GBK\"?>\n");
            }
            write_xml(&tree, &mut doc);
            let bytes = if decl { Charset::Gbk.encode(&doc).unwrap() } else { doc.clone().into_bytes() };
            prop_assert_eq!(parse_xml(&bytes, Charset::Utf8), Ok(tree), "{}", doc);
        }

        #[test]
        fn form_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_form(&bytes, Charset::Gbk);
            let _ = parse_form(&bytes, Charset::Utf8);
        }

        #[test]
        fn form_round_trips(k in "[a-z_]{1,8}", v in "\\PC{0,20}") {
            let body = encode_form(&[(&k, &v)], Charset::Utf8).unwrap();
            let pairs = parse_form(body.as_bytes(), Charset::Utf8).unwrap();
            prop_assert_eq!(field(&pairs, &k), Some(v.as_str()));
        }
    }
}
