//! Errors of the store: the backend-neutral [`colqwen_core::IndexError`].

pub use colqwen_core::{IndexError as Error, Result};
