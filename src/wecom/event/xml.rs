//! The XML layer under [`parse_event`](super::parse_event): the prolog scan that refuses
//! DTDs, and [`Walker`], a pull parser over quick-xml's low-level reader that walks each
//! known element as its [`Element`] table (written by `element!` in the event modules) says.
//!
//! Owns well-formedness, entity resolution, text/CDATA joining and the schema bookkeeping
//! shared by every element (a repeated single-valued element, child elements where text is
//! expected, repeated lists). Must NOT know any event's element names: those live in the
//! event modules beside their typed values.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::element::Element;
use super::{EventParseError, malformed};

/// Scans only the bytes before the root element: XML declaration, processing
/// instructions, comments and whitespace are skipped; any `<!` + letter (a
/// markup declaration such as DOCTYPE or ENTITY) is refused. Stops at the root
/// start tag and checks that it is `<xml`.
pub(super) fn check_prolog(b: &[u8]) -> Result<(), EventParseError> {
    let mut i = if b.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    loop {
        while b
            .get(i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            i += 1;
        }
        let rest = b.get(i..).unwrap_or_default();
        match rest {
            [] => return Err(malformed("document has no root element")),
            [b'<', b'?', tail @ ..] => {
                let end = find(tail, b"?>").ok_or_else(|| {
                    malformed("unterminated processing instruction before the root element")
                })?;
                i += 2 + end + 2;
            }
            [b'<', b'!', b'-', b'-', tail @ ..] => {
                let end = find(tail, b"-->")
                    .ok_or_else(|| malformed("unterminated comment before the root element"))?;
                i += 4 + end + 3;
            }
            [b'<', b'!', c, ..] if c.is_ascii_alphabetic() => return Err(EventParseError::Doctype),
            [b'<', b'!', ..] => return Err(malformed("unexpected markup before the root element")),
            [b'<', tail @ ..] => {
                let name_len = tail
                    .iter()
                    .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
                    .unwrap_or(tail.len());
                return if tail.get(..name_len) == Some(b"xml".as_slice()) {
                    Ok(())
                } else {
                    Err(malformed("root element is not <xml>"))
                };
            }
            _ => return Err(malformed("text before the root element")),
        }
    }
}

/// Position of `needle` (non-empty) in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Single pass over quick-xml events into borrowed raw structs
// ---------------------------------------------------------------------------

/// Borrowed-when-possible text of one element.
pub(super) type Txt<'a> = Option<Cow<'a, str>>;

/// Pull parser over quick-xml's low-level reader. Every method that is
/// called right after a start tag consumes everything up to and including
/// the matching end tag. Recursion only follows the fixed schema (depth ≤ 7);
/// unknown subtrees are skipped iteratively, so hostile nesting cannot
/// exhaust the stack.
///
/// Well-formedness problems and DOCTYPEs abort at once. Schema problems in
/// known elements (a repeated single-valued element, child elements inside a
/// text-only element) are recorded in `deferred` and the offending element is
/// skipped: they make a typed event malformed, but cannot break an `Other`
/// event that does not use those fields. Only the header fields are strict.
///
/// This module holds the element-agnostic methods, among them one reader per kind of row of
/// an `element!` table; the tables of the known elements live beside their raw structs in the
/// event modules.
pub(super) struct Walker<'a> {
    reader: Reader<&'a [u8]>,
    /// First schema problem met, reported when a typed event is built.
    pub(super) deferred: Option<EventParseError>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(xml: &'a str) -> Self {
        Self {
            reader: Reader::from_str(xml),
            deferred: None,
        }
    }

    /// Records a schema problem (the first one wins).
    fn defer(&mut self, err: EventParseError) {
        if self.deferred.is_none() {
            self.deferred = Some(err);
        }
    }

    /// Next event; a DOCTYPE anywhere is refused, reader errors are mapped.
    pub(super) fn next(&mut self) -> Result<Event<'a>, EventParseError> {
        match self.reader.read_event() {
            Ok(Event::DocType(_)) => Err(EventParseError::Doctype),
            Ok(event) => Ok(event),
            Err(err) => Err(EventParseError::Malformed(format!(
                "{} (near byte {})",
                describe_xml_error(&err),
                self.reader.error_position()
            ))),
        }
    }

    /// Malformed error that names the current byte offset.
    pub(super) fn malformed_here(&self, what: &str) -> EventParseError {
        EventParseError::Malformed(format!(
            "{what} (near byte {})",
            self.reader.buffer_position()
        ))
    }

    fn unexpected_eof(&self) -> EventParseError {
        self.malformed_here("unexpected end of document (unclosed element)")
    }

    /// Attributes are ignored but must be well-formed.
    #[inline]
    pub(super) fn check_attrs(&self, start: &BytesStart<'_>) -> Result<(), EventParseError> {
        let raw = start.attributes_raw();
        if raw.is_empty() || xml_trim(raw).is_empty() {
            return Ok(());
        }
        for attr in start.attributes() {
            if attr.is_err() {
                return Err(self.malformed_here("invalid attribute"));
            }
        }
        Ok(())
    }

    /// Skips the rest of an element whose start tag was just read.
    pub(super) fn skip(&mut self) -> Result<(), EventParseError> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    depth += 1;
                }
                Event::Empty(e) => self.check_attrs(&e)?,
                Event::End(_) => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => return Ok(()),
                },
                Event::GeneralRef(r) => {
                    resolve_ref(&r).map_err(|what| self.malformed_here(what))?;
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// Walks the children of the element whose start tag was just read.
    /// `on_child(walker, name, is_empty_tag)` returns `false` for elements it
    /// does not know; those are skipped. Text directly inside a structured
    /// element is ignored.
    pub(super) fn children<F>(&mut self, mut on_child: F) -> Result<(), EventParseError>
    where
        F: FnMut(&mut Self, &str, bool) -> Result<bool, EventParseError>,
    {
        loop {
            match self.next()? {
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    if !on_child(self, e.name().0, false)? {
                        self.skip()?;
                    }
                }
                Event::Empty(e) => {
                    self.check_attrs(&e)?;
                    on_child(self, e.name().0, true)?;
                }
                Event::End(_) => return Ok(()),
                Event::GeneralRef(r) => {
                    resolve_ref(&r).map_err(|what| self.malformed_here(what))?;
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// Text content of a text-only element whose start tag was just read.
    /// CDATA and text are concatenated; XML whitespace at the outer edges of
    /// *bare text* is dropped (formatting), CDATA content is kept verbatim.
    /// `Ok(None)` if the element has child elements (the rest of it is then
    /// skipped).
    fn text(&mut self) -> Result<Option<Cow<'a, str>>, EventParseError> {
        let mut acc: Cow<'a, str> = Cow::Borrowed("");
        // Trailing whitespace of the last bare-text piece; dropped if the
        // element ends right after it.
        let mut pending: Cow<'a, str> = Cow::Borrowed("");
        let mut first = true;
        loop {
            let (piece, is_text) = match self.next()? {
                Event::Text(t) => (t.xml10_content(), true),
                Event::CData(c) => (c.xml10_content(), false),
                Event::GeneralRef(r) => (
                    resolve_ref(&r).map_err(|what| self.malformed_here(what))?,
                    false,
                ),
                Event::End(_) => return Ok(Some(acc)),
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    // Rest of the child, then rest of this element.
                    self.skip()?;
                    self.skip()?;
                    return Ok(None);
                }
                Event::Empty(e) => {
                    self.check_attrs(&e)?;
                    self.skip()?;
                    return Ok(None);
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => continue,
            };
            append(&mut acc, std::mem::take(&mut pending));
            let piece = if is_text && first {
                trim_start_cow(piece)
            } else {
                piece
            };
            first = false;
            if is_text {
                let (body, tail) = split_trailing_ws(piece);
                append(&mut acc, body);
                pending = tail;
            } else {
                append(&mut acc, piece);
            }
        }
    }

    // The readers of the `element!` table rows. Each gets the slot of its field, whether the
    // element's tag was empty, and the element's path for its error messages (readers that
    // report no problem of their own ignore it).

    /// `leaf`: stores the text of a text-only element. A second occurrence or child elements
    /// are deferred schema problems (the first value is kept).
    pub(super) fn leaf(
        &mut self,
        slot: &mut Txt<'a>,
        empty: bool,
        path: &'static str,
    ) -> Result<(), EventParseError> {
        if let Some(problem) = self.store_text(slot, empty, path)? {
            self.defer(problem);
        }
        Ok(())
    }

    /// `header`: a header field, stored as by [`Walker::leaf`] but any problem is fatal.
    pub(super) fn header(
        &mut self,
        slot: &mut Txt<'a>,
        empty: bool,
        path: &'static str,
    ) -> Result<(), EventParseError> {
        match self.store_text(slot, empty, path)? {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Text of a text-only element into an empty `slot`. `Err` if the document is not
    /// well-formed; `Ok(Some(problem))` for a schema problem (a repeated element, child
    /// elements), the element having been consumed.
    fn store_text(
        &mut self,
        slot: &mut Txt<'a>,
        empty: bool,
        path: &'static str,
    ) -> Result<Option<EventParseError>, EventParseError> {
        if slot.is_some() {
            if !empty {
                self.skip()?;
            }
            return Ok(Some(duplicate(path)));
        }
        if empty {
            *slot = Some(Cow::Borrowed(""));
            return Ok(None);
        }
        Ok(match self.text()? {
            Some(text) => {
                *slot = Some(text);
                None
            }
            None => Some(EventParseError::Malformed(format!(
                "element {path} must contain text only"
            ))),
        })
    }

    /// `nested`: the children of an element whose start tag was just read, into `out` as its
    /// [`Element`] table says (nothing for an empty tag); unknown children are skipped. A
    /// repeated element fills the same value.
    pub(super) fn nested<T: Element<'a>>(
        &mut self,
        out: &mut T,
        empty: bool,
        _path: &'static str,
    ) -> Result<(), EventParseError> {
        if empty {
            return Ok(());
        }
        self.children(|w, name, empty| out.child(w, name, empty))
    }

    /// `single`: a structured element that may occur once, read into `slot` as by
    /// [`Walker::nested`]; a repetition is a deferred schema problem and is skipped.
    pub(super) fn single<T: Element<'a>>(
        &mut self,
        slot: &mut Option<T>,
        empty: bool,
        path: &'static str,
    ) -> Result<(), EventParseError> {
        if slot.is_some() {
            self.defer(duplicate(path));
            return if empty { Ok(()) } else { self.skip() };
        }
        self.nested(slot.insert(T::default()), empty, path)
    }

    /// `texts`: every non-blank text run inside the element (including nested elements),
    /// trimmed. Used for `Attach` / `MediaIds`, whose exact shape is not pinned down by the
    /// docs. An empty tag adds nothing.
    pub(super) fn texts(
        &mut self,
        out: &mut Vec<Cow<'a, str>>,
        empty: bool,
        _path: &'static str,
    ) -> Result<(), EventParseError> {
        if empty {
            return Ok(());
        }
        let mut depth = 0usize;
        let mut cur: Cow<'a, str> = Cow::Borrowed("");
        loop {
            match self.next()? {
                Event::Text(t) => append(&mut cur, t.xml10_content()),
                Event::CData(c) => append(&mut cur, c.xml10_content()),
                Event::GeneralRef(r) => {
                    let s = resolve_ref(&r).map_err(|what| self.malformed_here(what))?;
                    append(&mut cur, s);
                }
                Event::Start(e) => {
                    self.check_attrs(&e)?;
                    flush_trimmed(&mut cur, out);
                    depth += 1;
                }
                Event::Empty(e) => {
                    self.check_attrs(&e)?;
                    flush_trimmed(&mut cur, out);
                }
                Event::End(_) => {
                    flush_trimmed(&mut cur, out);
                    match depth.checked_sub(1) {
                        Some(d) => depth = d,
                        None => return Ok(()),
                    }
                }
                Event::Eof => return Err(self.unexpected_eof()),
                _ => {}
            }
        }
    }

    /// `repeated`: one element of a repeated list (`SpRecord`, `Details`, `Item`, …), read as by
    /// [`Walker::nested`] into a fresh default value that is appended to `out`. Elements are
    /// kept in document order, also when not consecutive.
    pub(super) fn repeated<T: Element<'a>>(
        &mut self,
        out: &mut Vec<T>,
        empty: bool,
        path: &'static str,
    ) -> Result<(), EventParseError> {
        let mut value = T::default();
        self.nested(&mut value, empty, path)?;
        out.push(value);
        Ok(())
    }

    /// `list`: a list wrapper (`ProcessList`, `Items`, `ExtAttr`, …): every `item` element
    /// inside it is appended to `out` as by [`Walker::repeated`]; other children are skipped.
    /// A repeated wrapper adds its items to the same list.
    pub(super) fn list<T: Element<'a>>(
        &mut self,
        out: &mut Vec<T>,
        empty: bool,
        path: &'static str,
        item: &str,
    ) -> Result<(), EventParseError> {
        if empty {
            return Ok(());
        }
        self.children(|w, name, empty| {
            if name != item {
                return Ok(false);
            }
            w.repeated(out, empty, path)?;
            Ok(true)
        })
    }
}

fn duplicate(name: &'static str) -> EventParseError {
    EventParseError::Malformed(format!("element {name} occurs more than once"))
}

/// Resolves `&…;`: character references and the five predefined entities
/// only. Anything else is an error (no DTD, so nothing else can be defined).
fn resolve_ref<'a>(r: &BytesRef<'_>) -> Result<Cow<'a, str>, &'static str> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Ok(Cow::Owned(c.to_string())),
        Ok(None) => resolve_predefined_entity(r)
            .map(Cow::Borrowed)
            .ok_or("unknown entity reference (only the predefined XML entities are allowed)"),
        Err(_) => Err("invalid character reference"),
    }
}

/// Payload-free description of a quick-xml reader error.
fn describe_xml_error(err: &XmlError) -> Cow<'static, str> {
    match err {
        // SyntaxError messages are fixed strings.
        XmlError::Syntax(s) => Cow::Owned(format!("XML syntax error: {s}")),
        XmlError::IllFormed(IllFormedError::MismatchedEndTag { .. }) => {
            Cow::Borrowed("ill-formed XML: mismatched end tag")
        }
        XmlError::IllFormed(IllFormedError::UnmatchedEndTag(_)) => {
            Cow::Borrowed("ill-formed XML: end tag without start tag")
        }
        XmlError::IllFormed(IllFormedError::MissingEndTag(_)) => {
            Cow::Borrowed("ill-formed XML: missing end tag")
        }
        XmlError::IllFormed(IllFormedError::UnclosedReference) => {
            Cow::Borrowed("ill-formed XML: `&` without a terminating `;`")
        }
        XmlError::IllFormed(_) => Cow::Borrowed("ill-formed XML"),
        XmlError::Escape(_) => Cow::Borrowed("invalid character or entity reference"),
        XmlError::Encoding(_) => Cow::Borrowed("invalid text encoding"),
        XmlError::InvalidAttr(_) => Cow::Borrowed("invalid attribute"),
        XmlError::Namespace(_) => Cow::Borrowed("invalid namespace declaration"),
        XmlError::Io(_) => Cow::Borrowed("I/O error while reading XML"),
    }
}

/// XML whitespace (space, tab, CR, LF); other Unicode spaces are content.
fn is_xml_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(super) fn xml_trim(s: &str) -> &str {
    s.trim_matches(is_xml_ws)
}

/// Appends `piece` to `acc`, borrowing as long as only one piece is non-empty.
fn append<'a>(acc: &mut Cow<'a, str>, piece: Cow<'a, str>) {
    if piece.is_empty() {
    } else if acc.is_empty() {
        *acc = piece;
    } else {
        acc.to_mut().push_str(&piece);
    }
}

fn trim_start_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim_start_matches(is_xml_ws)),
        Cow::Owned(o) => Cow::Owned(o.trim_start_matches(is_xml_ws).to_owned()),
    }
}

/// Splits off trailing XML whitespace: `(body, tail)`.
fn split_trailing_ws(s: Cow<'_, str>) -> (Cow<'_, str>, Cow<'_, str>) {
    let body_len = s.trim_end_matches(is_xml_ws).len();
    match s {
        Cow::Borrowed(b) => {
            let (body, tail) = b.split_at(body_len);
            (Cow::Borrowed(body), Cow::Borrowed(tail))
        }
        Cow::Owned(mut o) => {
            let tail = o.split_off(body_len);
            (Cow::Owned(o), Cow::Owned(tail))
        }
    }
}

/// Moves the trimmed, non-blank content of `cur` into `out`.
fn flush_trimmed<'a>(cur: &mut Cow<'a, str>, out: &mut Vec<Cow<'a, str>>) {
    match std::mem::take(cur) {
        Cow::Borrowed(b) => {
            let t = xml_trim(b);
            if !t.is_empty() {
                out.push(Cow::Borrowed(t));
            }
        }
        Cow::Owned(o) => {
            let t = xml_trim(&o);
            if !t.is_empty() {
                out.push(Cow::Owned(t.to_owned()));
            }
        }
    }
}
