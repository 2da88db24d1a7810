//! Text codecs the protocols need: strict GBK/UTF-8 decoding, `application/x-www-form-urlencoded` in GBK or
//! UTF-8, query strings, a minimal strict XML reader (no DOCTYPE, no entities beyond XML's five, bounded depth),
//! and Beijing-time timestamps.

use recharge_core::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

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

/// Percent-encodes bytes as `application/x-www-form-urlencoded` does (Java `URLEncoder`): `A-Za-z0-9*-._`
/// stay, space becomes `+`, everything else `%XX` uppercase.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
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

fn unhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(unhex);
                let lo = bytes.get(i + 2).copied().and_then(unhex);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h << 4) | l),
                    _ => return Err(CodecError::Percent),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
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

/// `yyyyMMddHHmmss` in Beijing time (UTC+8, no DST), as the 001 family wants `spordertime`.
pub fn beijing_compact(ts: Timestamp) -> String {
    let secs = ts.seconds() + 8 * 3600;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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

/// Decodes an XML response. The charset comes from the declaration (`GB2312`, `GBK`, `GB18030` → GBK;
/// `UTF-8`), else `default`. Refuses DOCTYPE, processing instructions after the declaration, unknown entities
/// and deep nesting: a provider answer is a flat record and anything richer is suspect. CDATA sections are
/// read as literal text (some platforms wrap `remark1` or product names in them).
pub fn parse_xml(bytes: &[u8], default: Charset) -> Result<Element, CodecError> {
    let charset = declared_charset(bytes)?.unwrap_or(default);
    let text = charset.decode(bytes)?;
    let mut p = XmlParser {
        s: text.as_bytes(),
        i: 0,
    };
    p.skip_ws();
    if p.starts_with(b"<?xml") {
        p.skip_past(b"?>")?;
    }
    p.skip_misc()?;
    let root = p.element(0)?;
    p.skip_misc()?;
    if p.i != p.s.len() {
        return Err(CodecError::Xml("content after the root element"));
    }
    Ok(root)
}

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
    let decl = String::from_utf8_lossy(&head[start..end]).to_ascii_lowercase();
    let Some(pos) = decl.find("encoding") else {
        return Ok(None);
    };
    let rest = decl[pos + "encoding".len()..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .ok_or(CodecError::Xml("bad declaration"))?
        .trim_start();
    let label: String = rest
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| *c != '"' && *c != '\'')
        .collect();
    match label.as_str() {
        "gb2312" | "gbk" | "gb18030" => Ok(Some(Charset::Gbk)),
        "utf-8" | "utf8" => Ok(Some(Charset::Utf8)),
        _ => Err(CodecError::Xml("unsupported declared encoding")),
    }
}

struct XmlParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl XmlParser<'_> {
    fn starts_with(&self, p: &[u8]) -> bool {
        self.s[self.i..].starts_with(p)
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn skip_past(&mut self, end: &[u8]) -> Result<(), CodecError> {
        match self.s[self.i..].windows(end.len()).position(|w| w == end) {
            Some(p) => {
                self.i += p + end.len();
                Ok(())
            }
            None => Err(CodecError::Xml("unterminated markup")),
        }
    }

    /// Whitespace and comments between top-level items. DOCTYPE and other `<!` / `<?` markup is refused.
    fn skip_misc(&mut self) -> Result<(), CodecError> {
        loop {
            self.skip_ws();
            if self.starts_with(b"<!--") {
                self.skip_past(b"-->")?;
            } else if self.starts_with(b"<!") {
                return Err(CodecError::Xml("DOCTYPE or declarations are not allowed"));
            } else if self.starts_with(b"<?") {
                return Err(CodecError::Xml("processing instructions are not allowed"));
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, CodecError> {
        let start = self.i;
        while self.i < self.s.len() {
            let b = self.s[self.i];
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || b == b':' {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            return Err(CodecError::Xml("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn element(&mut self, depth: usize) -> Result<Element, CodecError> {
        if depth > MAX_XML_DEPTH {
            return Err(CodecError::Xml("nesting too deep"));
        }
        if !self.starts_with(b"<") {
            return Err(CodecError::Xml("expected an element"));
        }
        self.i += 1;
        let name = self.name()?;
        // Attributes are skipped (no provider puts data in them), but they must not hide entities.
        loop {
            self.skip_ws();
            match self.s.get(self.i) {
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'>') => {
                    self.i += 2;
                    return Ok(Element {
                        name,
                        ..Element::default()
                    });
                }
                Some(b'>') => {
                    self.i += 1;
                    break;
                }
                Some(_) => {
                    self.name()?;
                    self.skip_ws();
                    if self.s.get(self.i) != Some(&b'=') {
                        return Err(CodecError::Xml("bad attribute"));
                    }
                    self.i += 1;
                    self.skip_ws();
                    let q = *self.s.get(self.i).ok_or(CodecError::Xml("eof"))?;
                    if q != b'"' && q != b'\'' {
                        return Err(CodecError::Xml("bad attribute"));
                    }
                    self.i += 1;
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i] != q {
                        self.i += 1;
                    }
                    if self.i >= self.s.len() {
                        return Err(CodecError::Xml("eof"));
                    }
                    decode_entities(&self.s[start..self.i])?;
                    self.i += 1;
                }
                None => return Err(CodecError::Xml("eof")),
            }
        }
        let mut el = Element {
            name,
            ..Element::default()
        };
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'<' {
                self.i += 1;
            }
            el.text.push_str(&decode_entities(&self.s[start..self.i])?);
            if self.i >= self.s.len() {
                return Err(CodecError::Xml("eof"));
            }
            if self.starts_with(b"</") {
                self.i += 2;
                let close = self.name()?;
                self.skip_ws();
                if close != el.name || self.s.get(self.i) != Some(&b'>') {
                    return Err(CodecError::Xml("mismatched end tag"));
                }
                self.i += 1;
                return Ok(el);
            } else if self.starts_with(b"<!--") {
                self.skip_past(b"-->")?;
            } else if self.starts_with(b"<![CDATA[") {
                self.i += b"<![CDATA[".len();
                let start = self.i;
                self.skip_past(b"]]>")?;
                let raw = &self.s[start..self.i - b"]]>".len()];
                el.text.push_str(
                    std::str::from_utf8(raw).map_err(|_| CodecError::Malformed("UTF-8"))?,
                );
            } else if self.starts_with(b"<!") || self.starts_with(b"<?") {
                return Err(CodecError::Xml("markup declarations are not allowed"));
            } else {
                el.children.push(self.element(depth + 1)?);
            }
        }
    }
}

fn decode_entities(raw: &[u8]) -> Result<String, CodecError> {
    let s = std::str::from_utf8(raw).map_err(|_| CodecError::Malformed("UTF-8"))?;
    if !s.contains('&') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let end = after
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or(CodecError::Xml("bare ampersand"))?;
        let ent = &after[..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or(CodecError::Xml("entities are not allowed"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
    fn bodies_over_the_cap_are_refused() {
        assert!(check_cap(&[0; 10], 10).is_ok());
        assert_eq!(
            check_cap(&[0; 11], 10),
            Err(CodecError::TooLarge { size: 11, cap: 10 })
        );
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
