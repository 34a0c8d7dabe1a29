//! What the page tree says, read with hayro, against the pages hayro yields.
//!
//! hayro 0.9 is lenient in both directions. It skips a `/Kids` entry whose object is missing or unreadable
//! (the page is lost without a word), and it takes any kid that is not a `/Pages` node for a page; when the
//! root `/Pages` node cannot be read at all, it makes a page of every dictionary in the file that has a
//! `/Contents` entry, annotations with a `/Contents` text included (blank "pages" that do not exist). So the
//! document's page count is checked against the tree: its root `/Count` and the number of leaves its `/Kids`
//! name (a kid whose object is missing counts: it is a page the file lost), and dictionaries that are not
//! pages are dropped from what hayro yields ([`is_page`]).
//!
//! For a truncated file, [`is_complete`] tells the pages whose every object survived the cut.

use std::collections::HashSet;

use hayro::hayro_syntax::Pdf;
use hayro::hayro_syntax::object::{Array, Dict, MaybeRef, Name, Object, ObjectIdentifier};
use hayro::hayro_syntax::page::Page;
use hayro::hayro_syntax::xref::XRef;

/// Most page-tree nodes visited, and most objects visited per page: a file with more is not checked further
/// (a count is then a lower bound; a page counts as complete).
const NODE_BUDGET: usize = 2_000_000;
const PAGE_BUDGET: usize = 100_000;

/// What the page tree says.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TreeCount {
    /// The root node's `/Count`, if it can be read.
    pub(crate) count: Option<usize>,
    /// Leaves named by `/Kids` from the root down: page objects, and kids whose object is missing.
    pub(crate) kids: usize,
}

/// Read the root node's `/Count` and count the leaves of its `/Kids`.
pub(crate) fn count(pdf: &Pdf) -> TreeCount {
    let xref = pdf.xref();
    let Some(root) = xref.get::<Dict<'_>>(xref.root_id()).and_then(|c| c.get::<Dict<'_>>(b"Pages")) else {
        return TreeCount::default();
    };
    let mut out = TreeCount { count: root.get::<usize>(b"Count"), kids: 0 };
    let mut visited: HashSet<ObjectIdentifier> = root.obj_id().into_iter().collect();
    let mut stack = vec![root];
    let mut budget = NODE_BUDGET;
    while let Some(node) = stack.pop() {
        let Some(kids) = node.get::<Array<'_>>(b"Kids") else { continue };
        for kid in kids.raw_iter() {
            if budget == 0 {
                return out;
            }
            budget -= 1;
            let dict = match kid {
                MaybeRef::Ref(r) => {
                    if !visited.insert(r.into()) {
                        continue;
                    }
                    xref.get::<Dict<'_>>(r.into())
                }
                MaybeRef::NotRef(Object::Dict(d)) => Some(d),
                MaybeRef::NotRef(_) => continue,
            };
            match dict {
                Some(d) if type_is(&d, b"Pages") && d.contains_key(b"Kids") => stack.push(d),
                _ => out.kids += 1,
            }
        }
    }
    out
}

/// Whether a dictionary hayro yields as a page is one: typed `/Page`; or untyped (or mistyped, with a
/// `/Parent` as every page has) and without a `/Subtype` (which annotations, fonts and XObjects have, and
/// pages never do).
pub(crate) fn is_page(page: &Page<'_>) -> bool {
    let d = page.raw();
    if type_is(d, b"Page") {
        return true;
    }
    !d.contains_key(b"Subtype") && (!d.contains_key(b"Type") || d.contains_key(b"Parent"))
}

/// Whether every object the page uses (content, resources, annotations, transitively) can be read: in a
/// truncated file, the pages whose objects all came before the cut. Other pages and the page tree are not
/// followed.
pub(crate) fn is_complete(page: &Page<'_>, xref: &XRef) -> bool {
    let mut walk = Walk { xref, visited: HashSet::new(), budget: PAGE_BUDGET };
    walk.dict(page.raw(), true)
}

struct Walk<'x> {
    xref: &'x XRef,
    visited: HashSet<ObjectIdentifier>,
    budget: usize,
}

impl<'x> Walk<'x> {
    /// False if a reference below `d` names an object that cannot be read.
    fn dict(&mut self, d: &Dict<'x>, is_page: bool) -> bool {
        if !is_page && (type_is(d, b"Page") || type_is(d, b"Pages")) {
            return true;
        }
        d.entries().all(|(key, item)| {
            // Keys that lead to other pages, the tree, or data a render does not need.
            let skip = matches!(
                key.as_ref(),
                b"Parent"
                    | b"P"
                    | b"Dest"
                    | b"D"
                    | b"A"
                    | b"Next"
                    | b"Prev"
                    | b"First"
                    | b"Last"
                    | b"Thumb"
                    | b"Metadata"
                    | b"PieceInfo"
                    | b"B"
                    | b"StructParent"
                    | b"StructParents"
            );
            skip || self.item(item)
        })
    }

    fn item(&mut self, item: MaybeRef<Object<'x>>) -> bool {
        if self.budget == 0 {
            return true;
        }
        self.budget -= 1;
        let obj = match item {
            MaybeRef::NotRef(o) => o,
            MaybeRef::Ref(r) => {
                if !self.visited.insert(r.into()) {
                    return true;
                }
                match self.xref.get::<Object<'x>>(r.into()) {
                    Some(o) => o,
                    None => return false,
                }
            }
        };
        match obj {
            Object::Dict(d) => self.dict(&d, false),
            Object::Stream(s) => self.dict(&s.dict().clone(), false),
            Object::Array(a) => a.raw_iter().all(|i| self.item(i)),
            _ => true,
        }
    }
}

fn type_is(d: &Dict<'_>, name: &[u8]) -> bool {
    d.get::<Name<'_>>(b"Type").is_some_and(|t| t.as_ref() == name)
}
