//! Declarative schema of the known elements with child elements: [`Element`], what the generic
//! walk ([`Walker::nested`]) needs from a raw struct, and `element!`, which writes a raw struct
//! and its [`Element`] implementation from one table of fields.
//!
//! Each row of a table is a field, its type, how it is read and from which child element. The
//! way of reading is the [`Walker`] method of that name, called as
//! `kind(&mut field, empty, path)` (`list` also gets the item name):
//!
//! | row | reads | field type |
//! | --- | --- | --- |
//! | `f: T = leaf "E"` (or `leaf "E" \| "Alias"`) | text of `<E>`, schema problems deferred | `Txt` |
//! | `f: T = header "E"` | text of `<E>`, any problem fatal | `Txt` |
//! | `f: T = single "E"` | the children of `<E>`, which may occur once | `Option<S>` |
//! | `f: T = repeated "E"` | one entry per `<E>` | `Vec<S>` |
//! | `f: T = list "E" of "C"` | one entry per `<C>` inside `<E>` | `Vec<S>` |
//! | `f: T = texts "E"` | every non-blank text run inside `<E>` | `Vec<Cow<str>>` |
//! | `f: T = nested "E"` | the children of every `<E>`, into one value | `S` |
//!
//! where `S` is itself an [`Element`]. The `path` is the struct's `in "Parent/"` followed by the
//! element name (`"Details/SpTime"`); errors name it. Fields after `..` are [`Element`]s of their
//! own, asked in order for a child no row names (the root keeps each typed event's root
//! children beside that event).
//!
//! A table becomes one `match` on the element name: no per-child tables are built or searched.

use super::EventParseError;
use super::xml::Walker;

/// A known element with child elements, as its raw struct: how one child is read into it.
/// Written by `element!`; [`Walker::nested`] walks an element with it.
pub(super) trait Element<'a>: Default {
    /// Reads the child element `name`, whose start tag was just read (`empty` for a `<name/>`
    /// tag), into `self`. `Ok(false)` if `name` is not a known child: nothing was read then,
    /// and the caller skips the element.
    fn child(
        &mut self,
        w: &mut Walker<'a>,
        name: &str,
        empty: bool,
    ) -> Result<bool, EventParseError>;
}

/// Declares raw structs and their [`Element`] implementations from tables; see the module
/// docs for the rows.
macro_rules! element {
    (
        $(
            $(#[$meta:meta])*
            $vis:vis struct $name:ident<$lt:lifetime> in $prefix:literal {
                $(
                    $(#[$fmeta:meta])*
                    $field:ident: $ty:ty = $kind:ident $elem:literal $(| $alias:literal)*
                        $(of $item:literal)?,
                )*
                $(
                    ..
                    $( $(#[$rmeta:meta])* $rest:ident: $rty:ty, )+
                )?
            }
        )+
    ) => {
        $(
            $(#[$meta])*
            #[derive(Default)]
            $vis struct $name<$lt> {
                $( $(#[$fmeta])* pub(super) $field: $ty, )*
                $( $( $(#[$rmeta])* pub(super) $rest: $rty, )+ )?
            }

            impl<$lt> $crate::wecom::event::element::Element<$lt> for $name<$lt> {
                fn child(
                    &mut self,
                    w: &mut $crate::wecom::event::xml::Walker<$lt>,
                    name: &str,
                    empty: bool,
                ) -> Result<bool, $crate::wecom::event::EventParseError> {
                    match name {
                        $(
                            $elem $(| $alias)* => {
                                let path = concat!($prefix, $elem);
                                w.$kind(&mut self.$field, empty, path $(, $item)?)?;
                            }
                        )*
                        _ => return Ok(false $( $(
                            || $crate::wecom::event::element::Element::child(
                                &mut self.$rest, w, name, empty,
                            )?
                        )+ )?),
                    }
                    Ok(true)
                }
            }
        )+
    };
}
pub(super) use element;

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;

    use super::super::xml::{Txt, Walker};
    use super::Element;
    use crate::wecom::event::EventParseError;

    element! {
        struct Record<'a> in "SpRecord/" {
            sp_status: Txt<'a> = leaf "SpStatus",
            old_sp_status: Txt<'a> = leaf "OldSpStatus",
            status: Txt<'a> = leaf "Status",
        }

        struct Under<'a> in "SpStatus/" {
            other: Txt<'a> = leaf "Other",
        }
    }

    /// Walks the one element of `xml` into a `T`; answers it and the deferred schema problem.
    fn walk<'a, T: Element<'a>>(xml: &'a str) -> (T, Option<EventParseError>) {
        let mut w = Walker::new(xml);
        assert!(matches!(w.next(), Ok(Event::Start(_))), "{xml}");
        let mut out = T::default();
        w.nested(&mut out, false, "test").unwrap();
        (out, w.deferred)
    }

    #[test]
    fn a_row_takes_only_its_whole_element_name() {
        let xml = "<SpRecord><SpStatus>1</SpStatus></SpRecord>";
        let (r, problem) = walk::<Record>(xml);
        assert_eq!(r.sp_status.as_deref(), Some("1"), "SpRecord/SpStatus");
        assert_eq!(r.old_sp_status, None, "SpRecord/OldSpStatus");
        assert_eq!(r.status, None, "SpRecord/Status");
        assert_eq!(problem, None);
        let (u, _) = walk::<Under>(xml);
        assert_eq!(u.other, None, "SpStatus/Other");
        let (r, _) = walk::<Record>("<SpRecord><Status>2</Status></SpRecord>");
        assert_eq!((r.sp_status, r.status.as_deref()), (None, Some("2")));
    }

    #[test]
    fn a_row_is_named_by_its_path() {
        let xml = "<SpRecord><SpStatus>1</SpStatus><SpStatus>2</SpStatus></SpRecord>";
        let (r, problem) = walk::<Record>(xml);
        assert_eq!(r.sp_status.as_deref(), Some("1"));
        let expected = "element SpRecord/SpStatus occurs more than once";
        assert_eq!(problem, Some(EventParseError::Malformed(expected.into())));
    }
}
