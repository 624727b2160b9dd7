//! The XML WeChat pushes (a flat `<xml>` of fields) and the passive replies we send back.
//!
//! quick-xml never expands custom entities or fetches anything external; on top of that any
//! `<!DOCTYPE` is refused outright, since no genuine push carries one and a DTD is the door
//! for entity tricks. A field given twice is refused rather than resolved (first or last
//! wins?), so this parser and any other reader of the same bytes cannot disagree about what a
//! push said; NUL, which XML forbids and C-string consumers truncate at, is refused too.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::Event;
use thiserror::Error;

/// Fields deeper than this are skipped; real pushes nest at most two levels.
const MAX_DEPTH: usize = 8;
/// A push has about a dozen fields; empty ones (`<A/>`) count too.
const MAX_FIELDS: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("DTDs are not accepted")]
    Dtd,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("root element must be <xml>")]
    NotXmlRoot,
    #[error("too deeply nested or too many fields")]
    TooComplex,
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    #[error("field <{0}> given more than once")]
    DuplicateField(String),
    #[error("NUL byte")]
    Nul,
}

/// One pushed message: the direct children of `<xml>`, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    fields: HashMap<String, String>,
}

impl Incoming {
    pub fn parse(xml: &str) -> Result<Self, XmlError> {
        if xml.contains('\0') {
            return Err(XmlError::Nul);
        }
        let mut reader = Reader::from_str(xml);
        let mut depth = 0usize;
        let mut seen_root = false;
        let mut current: Option<(String, String)> = None;
        let mut fields: HashMap<String, String> = HashMap::new();
        let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
        // Checked when a field opens, so an oversized or repeated push stops early.
        let admit = |fields: &HashMap<String, String>, name: &str| {
            if fields.contains_key(name) {
                Err(XmlError::DuplicateField(name.to_string()))
            } else if fields.len() >= MAX_FIELDS {
                Err(XmlError::TooComplex)
            } else {
                Ok(())
            }
        };
        loop {
            let event = reader.read_event().map_err(|e| malformed(&e))?;
            match event {
                Event::DocType(_) => return Err(XmlError::Dtd),
                Event::Start(start) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(XmlError::TooComplex);
                    }
                    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    if depth == 1 {
                        if seen_root || name != "xml" {
                            return Err(XmlError::NotXmlRoot);
                        }
                        seen_root = true;
                    } else if depth == 2 {
                        admit(&fields, &name)?;
                        current = Some((name, String::new()));
                    }
                }
                Event::Empty(start) => {
                    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    if depth == 0 {
                        if name != "xml" || seen_root {
                            return Err(XmlError::NotXmlRoot);
                        }
                        seen_root = true;
                    } else if depth == 1 {
                        admit(&fields, &name)?;
                        fields.insert(name, String::new());
                    }
                }
                Event::End(_) => {
                    if depth == 2
                        && let Some((name, value)) = current.take()
                    {
                        fields.insert(name, value);
                    }
                    depth = depth.saturating_sub(1);
                }
                Event::Text(text) => {
                    if depth == 2
                        && let Some((_, value)) = current.as_mut()
                    {
                        value.push_str(&text.xml_content().map_err(|e| malformed(&e))?);
                    } else if depth == 0 && !text.xml_content().is_ok_and(|t| t.trim().is_empty()) {
                        return Err(XmlError::Malformed("text outside <xml>".into()));
                    }
                }
                Event::CData(data) => {
                    if depth == 2
                        && let Some((_, value)) = current.as_mut()
                    {
                        value.push_str(&data.xml_content().map_err(|e| malformed(&e))?);
                    }
                }
                Event::GeneralRef(reference) => {
                    let resolved = if reference.is_char_ref() {
                        reference
                            .resolve_char_ref()
                            .map_err(|e| malformed(&e))?
                            .map(String::from)
                    } else {
                        let name = reference.decode().map_err(|e| malformed(&e))?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => Some(s.to_string()),
                            None => return Err(XmlError::UnknownEntity(name.into_owned())),
                        }
                    };
                    if depth == 2
                        && let Some((_, value)) = current.as_mut()
                        && let Some(s) = resolved
                    {
                        value.push_str(&s);
                    }
                }
                Event::Eof => break,
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            }
        }
        if !seen_root || depth != 0 {
            return Err(XmlError::NotXmlRoot);
        }
        Ok(Self { fields })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A field, or `""` when absent.
    pub fn field(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn to_user(&self) -> &str {
        self.field("ToUserName")
    }

    /// The sender's openid.
    pub fn from_user(&self) -> &str {
        self.field("FromUserName")
    }

    pub fn create_time(&self) -> &str {
        self.field("CreateTime")
    }

    pub fn msg_type(&self) -> &str {
        self.field("MsgType")
    }

    pub fn event(&self) -> &str {
        self.field("Event")
    }

    pub fn event_key(&self) -> &str {
        self.field("EventKey")
    }
}

/// One article of a passive `news` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub title: String,
    pub description: String,
    pub pic_url: String,
    pub url: String,
}

/// Wraps text in CDATA; a literal `]]>` is split across two sections so it cannot end ours.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// Passive `text` reply. `to` is the user's openid, `from` the account's `gh_` id.
pub fn text_reply(to: &str, from: &str, create_time: i64, content: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType><Content>{}</Content></xml>",
        cdata(to),
        cdata(from),
        cdata("text"),
        cdata(content)
    )
}

/// Passive `news` reply with one article (WeChat shows at most one for replies to events).
pub fn news_reply(to: &str, from: &str, create_time: i64, article: &Article) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType><ArticleCount>1</ArticleCount><Articles><item><Title>{}</Title><Description>{}</Description><PicUrl>{}</PicUrl><Url>{}</Url></item></Articles></xml>",
        cdata(to),
        cdata(from),
        cdata("news"),
        cdata(&article.title),
        cdata(&article.description),
        cdata(&article.pic_url),
        cdata(&article.url)
    )
}

/// The safe-mode envelope around an encrypted reply.
pub fn encrypted_reply(encrypt: &str, msg_signature: &str, timestamp: &str, nonce: &str) -> String {
    format!(
        "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{}</TimeStamp><Nonce>{}</Nonce></xml>",
        cdata(encrypt),
        cdata(msg_signature),
        cdata(timestamp),
        cdata(nonce)
    )
}

/// The news article of a reply, parsed back (tests and tools).
pub fn parse_article(xml: &str) -> Result<Option<Article>, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut article = Article {
        title: String::new(),
        description: String::new(),
        pic_url: String::new(),
        url: String::new(),
    };
    let mut found = false;
    loop {
        match reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?
        {
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
                if name == "item" {
                    found = true;
                }
                path.push(name);
                if path.len() > MAX_DEPTH {
                    return Err(XmlError::TooComplex);
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::CData(d) => {
                let text = d
                    .xml_content()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                if path.len() == 4 && path[2] == "item" {
                    match path[3].as_str() {
                        "Title" => article.title.push_str(&text),
                        "Description" => article.description.push_str(&text),
                        "PicUrl" => article.pic_url.push_str(&text),
                        "Url" => article.url.push_str(&text),
                        _ => {}
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found.then_some(article))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBSCRIBE: &str = "<xml><ToUserName><![CDATA[gh_123]]></ToUserName>\n<FromUserName><![CDATA[oOPENID]]></FromUserName><CreateTime>1714037059</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_abc]]></EventKey><Ticket><![CDATA[gQ+/=]]></Ticket></xml>";

    #[test]
    fn parses_a_push() {
        let m = Incoming::parse(SUBSCRIBE).unwrap();
        assert_eq!(m.to_user(), "gh_123");
        assert_eq!(m.from_user(), "oOPENID");
        assert_eq!(m.create_time(), "1714037059");
        assert_eq!(m.msg_type(), "event");
        assert_eq!(m.event(), "subscribe");
        assert_eq!(m.event_key(), "qrscene_abc");
        assert_eq!(m.get("Ticket"), Some("gQ+/="));
        assert_eq!(m.get("Missing"), None);
    }

    #[test]
    fn entities_plain_text_and_nesting() {
        let m = Incoming::parse(
            "<?xml version=\"1.0\"?><xml><A>a&amp;b&#20320;</A><B/><C><D>deep</D></C></xml>",
        )
        .unwrap();
        assert_eq!(m.field("A"), "a&b你");
        assert_eq!(m.field("B"), "");
        assert_eq!(
            m.field("C"),
            "",
            "nested text does not leak into the parent"
        );
    }

    #[test]
    fn refuses_dtds_and_junk() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><A>&x;</A></xml>";
        assert_eq!(Incoming::parse(xxe), Err(XmlError::Dtd));
        let lol = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><xml><A>&lol2;</A></xml>";
        assert_eq!(Incoming::parse(lol), Err(XmlError::Dtd));
        assert_eq!(
            Incoming::parse("<xml><A>&x;</A></xml>"),
            Err(XmlError::UnknownEntity("x".into()))
        );
        assert_eq!(Incoming::parse("<root/>"), Err(XmlError::NotXmlRoot));
        assert_eq!(Incoming::parse(""), Err(XmlError::NotXmlRoot));
        assert!(Incoming::parse("<xml><A></xml>").is_err());
        assert!(Incoming::parse("<xml></xml><xml></xml>").is_err());
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(20), "</a>".repeat(20));
        assert_eq!(Incoming::parse(&deep), Err(XmlError::TooComplex));
    }

    #[test]
    fn refuses_repeated_fields_nul_and_too_many_empty_fields() {
        assert_eq!(
            Incoming::parse(
                "<xml><Event>SCAN</Event><EventKey>a</EventKey><EventKey>b</EventKey></xml>"
            ),
            Err(XmlError::DuplicateField("EventKey".into()))
        );
        assert_eq!(
            Incoming::parse("<xml><A/><A>x</A></xml>"),
            Err(XmlError::DuplicateField("A".into()))
        );
        assert_eq!(
            Incoming::parse("<xml><A>x</A><A/></xml>"),
            Err(XmlError::DuplicateField("A".into()))
        );
        assert_eq!(
            Incoming::parse("<xml><A>a\0b</A></xml>"),
            Err(XmlError::Nul)
        );
        assert_eq!(
            Incoming::parse("<xml><A><![CDATA[a\0b]]></A></xml>"),
            Err(XmlError::Nul)
        );
        assert!(matches!(
            Incoming::parse("<xml><A>a&#0;b</A></xml>"),
            Err(XmlError::Malformed(_))
        ));
        // Nested elements of one field may repeat (they are not fields).
        let m = Incoming::parse("<xml><L><i>1</i><i>2</i></L><B>b</B></xml>").unwrap();
        assert_eq!(m.field("B"), "b");
        let fields = |n: usize, empty: bool| {
            let body: String = (0..n)
                .map(|i| {
                    if empty {
                        format!("<F{i}/>")
                    } else {
                        format!("<F{i}>v</F{i}>")
                    }
                })
                .collect();
            format!("<xml>{body}</xml>")
        };
        for empty in [false, true] {
            assert!(Incoming::parse(&fields(MAX_FIELDS, empty)).is_ok());
            assert_eq!(
                Incoming::parse(&fields(MAX_FIELDS + 1, empty)),
                Err(XmlError::TooComplex),
                "empty: {empty}"
            );
        }
    }

    #[test]
    fn replies_round_trip() {
        let article = Article {
            title: "你的照片 ]]> Your photos".into(),
            description: "d".into(),
            pic_url: "https://hub.example/s/a/photos/p.jpg?k=1".into(),
            url: "https://hub.example/s/a?k=1&x=<2>".into(),
        };
        let news = news_reply("oOPENID", "gh_123", 42, &article);
        let back = Incoming::parse(&news).unwrap();
        assert_eq!(back.msg_type(), "news");
        assert_eq!(back.field("ArticleCount"), "1");
        assert_eq!(back.to_user(), "oOPENID");
        assert_eq!(parse_article(&news).unwrap(), Some(article));
        let text = text_reply("o", "gh", 1, "过期 expired");
        let back = Incoming::parse(&text).unwrap();
        assert_eq!(
            (back.msg_type(), back.field("Content")),
            ("text", "过期 expired")
        );
        assert_eq!(parse_article(&text).unwrap(), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A push's fields: distinct names, any text XML can carry but the line ends quick-xml
        /// normalises to LF (CR, and XML 1.1's NEL and LINE SEPARATOR), which do not come back
        /// as themselves.
        fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
            proptest::collection::btree_map(
                "[A-Za-z][A-Za-z0-9_]{0,11}",
                "[\\t\\n\\x20-\\x84\\x{86}-\\x{2027}\\x{2029}-\\x{D7FF}\\x{E000}-\\x{FFFD}\\x{10000}-\\x{10FFFF}]{0,24}",
                0..12,
            )
                .prop_map(|m| m.into_iter().collect())
        }

        /// XML-escaped text, or a CDATA section (split around `]]>`), as WeChat sends both.
        fn encode(value: &str, cdata_form: bool) -> String {
            if cdata_form {
                cdata(value)
            } else {
                quick_xml::escape::escape(value).into_owned()
            }
        }

        fn document(fields: &[(String, String)], cdata_form: bool) -> String {
            let body: String = fields
                .iter()
                .map(|(n, v)| format!("<{n}>{}</{n}>", encode(v, cdata_form)))
                .collect();
            format!("<xml>{body}</xml>")
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Every field comes back exactly, escaped or in CDATA.
            #[test]
            fn fields_read_back(fields in fields(), cdata_form in any::<bool>()) {
                let xml = document(&fields, cdata_form);
                let parsed = Incoming::parse(&xml);
                prop_assert!(parsed.is_ok(), "{xml}: {parsed:?}");
                let parsed = parsed.unwrap();
                for (name, value) in &fields {
                    prop_assert_eq!(parsed.field(name), value.as_str(), "{}", &xml);
                }
            }

            /// A field repeated anywhere in the push is refused, whatever the values.
            #[test]
            fn repeated_fields_are_refused(
                fields in fields(),
                which in any::<prop::sample::Index>(),
                value in "[a-z]{0,8}",
                empty in any::<bool>(),
            ) {
                prop_assume!(!fields.is_empty());
                let name = &fields[which.index(fields.len())].0;
                let extra = if empty { format!("<{name}/>") } else { format!("<{name}>{value}</{name}>") };
                let xml = document(&fields, true).replace("</xml>", &format!("{extra}</xml>"));
                prop_assert_eq!(Incoming::parse(&xml), Err(XmlError::DuplicateField(name.clone())));
            }

            /// A NUL anywhere is refused.
            #[test]
            fn nul_is_refused(fields in fields(), at in any::<prop::sample::Index>()) {
                let xml = document(&fields, true);
                let mut cut = at.index(xml.len() + 1);
                while !xml.is_char_boundary(cut) {
                    cut -= 1;
                }
                let with_nul = format!("{}\0{}", &xml[..cut], &xml[cut..]);
                prop_assert_eq!(Incoming::parse(&with_nul), Err(XmlError::Nul));
            }

            /// Arbitrary text, and mangled pushes: an answer, never a panic.
            #[test]
            fn arbitrary_input_never_panics(text in "\\PC{0,200}", fields in fields(), cut in any::<prop::sample::Index>()) {
                let _ = Incoming::parse(&text);
                let xml = document(&fields, false);
                let mut end = cut.index(xml.len() + 1);
                while !xml.is_char_boundary(end) {
                    end -= 1;
                }
                let _ = Incoming::parse(&xml[..end]);
                let _ = parse_article(&xml[..end]);
            }
        }
    }
}
