//! One module per page. Each handler reads through [`crate::App`] (the
//! node's `Repo`, the search index), renders with [`crate::page`], and
//! writes only through `Repo` methods the CLI uses too.

pub(crate) mod board;
pub(crate) mod calendar;
pub(crate) mod duplicates;
pub(crate) mod form;
pub(crate) mod import;
pub(crate) mod list;
pub(crate) mod merge;
pub(crate) mod privacy;
pub(crate) mod record;
pub(crate) mod reports;
pub(crate) mod schema;
pub(crate) mod search;
pub(crate) mod spaces;
pub(crate) mod work;
