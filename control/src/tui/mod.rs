//! `lab top`'s terminal view, kept apart from I/O so it can be tested without a terminal:
//!
//! - [`model`]: what the screen shows ([`model::TopModel`]): the boards from `/api/boards`,
//!   short CPU and network histories for sparklines, the last event, the connection status.
//!   Updated by plain methods from the API's JSON types.
//! - [`render`]: pure drawing of a model into a ratatui frame (header, board table, footer);
//!   columns are chosen to fit the width, so a resize only needs a redraw.
//! - [`term`]: the terminal guard: raw mode and the alternate screen on, and off again on drop,
//!   on error and on panic.
//!
//! The loop that polls `lab serve` and reads keys lives in `cli/top.rs`.

pub mod model;
pub mod render;
pub mod term;
