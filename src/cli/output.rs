//! How results are printed: a table for people, JSON for programs.

use comfy_table::{Table, presets};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for a terminal
    Text,
    /// One JSON document on stdout
    Json,
}

/// A plain table with a header, columns aligned, no borders (greppable, copy-pasteable).
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}
