//! YAML text → a plain tree that keeps every scalar's literal text.
//!
//! The tree is built from the parser's events rather than through serde because
//! serde would turn `0.00000013` into an `f64` before we could see its digits, and
//! because scalar types depend on where a value sits (`redis_port: "6379"` and
//! `api_key: 12345` are both fine), which only the schema walk knows.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, Span};

use super::error::ConfigError;

/// A YAML node, before any interpretation beyond null-ness.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// `~`, `null`, or nothing at all (`key:`).
    Null,
    /// Any other scalar, as written (after YAML escape processing).
    Scalar(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order; duplicate keys are kept for the schema walk to report.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// "a list", "a mapping"... for type errors.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Scalar(_) => "a single value",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// How many nodes this tree holds, to bound alias expansion.
    fn size(&self) -> usize {
        match self {
            Node::Null | Node::Scalar(_) => 1,
            Node::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + v.size()).sum::<usize>(),
        }
    }
}

/// Aliases copy their anchor's tree; without a bound, a "billion laughs" file of a
/// few hundred bytes would expand to gigabytes. Real configs are a few hundred nodes.
const MAX_NODES: usize = 200_000;

/// Parses one YAML document. An empty file gives [`Node::Null`].
pub(crate) fn parse(text: &str) -> Result<Node, ConfigError> {
    let mut options = Options::default();
    // As libyaml (and so PyYAML, which LiteLLM uses) reads a block scalar at end of file.
    options.block_scalar_eof_without_line_feed = true;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut builder = Builder::default();
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(scan_error)?;
        builder.event(event, span)?;
    }
    Ok(builder.root.unwrap_or(Node::Null))
}

fn scan_error(error: ScanError) -> ConfigError {
    ConfigError::Yaml {
        line: error.marker().line(),
        column: error.marker().col() + 1,
        message: error.info(),
    }
}

fn yaml_error(span: &Span, message: &str) -> ConfigError {
    ConfigError::Yaml {
        line: span.start.line(),
        column: span.start.col() + 1,
        message: message.to_owned(),
    }
}

/// A collection being built, with the anchor to record when it closes.
enum Frame {
    Seq {
        items: Vec<Node>,
        anchor: usize,
    },
    Map {
        entries: Vec<(String, Node)>,
        key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), ConfigError> {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(yaml_error(
                        &span,
                        "more than one YAML document; a config file holds exactly one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                // `!!str ~` is the string "~"; only untagged plain scalars can be null.
                let forced_string = tag.as_ref().and_then(|tag| tag.core_suffix()) == Some("str");
                let node = if style == ScalarStyle::Plain && !forced_string && is_null(&text) {
                    Node::Null
                } else {
                    Node::Scalar(text.into_owned())
                };
                self.complete(node, anchor, 1, &span)?;
            }
            Event::Alias(id) => {
                // The parser rejects aliases to unknown anchors, so this lookup only fails
                // for an alias to a collection that is still open (a recursive alias).
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    yaml_error(&span, "an alias refers to the collection that contains it")
                })?;
                let added = node.size();
                self.complete(node, 0, added, &span)?;
            }
            Event::SequenceStart(_, anchor, _) => self.stack.push(Frame::Seq {
                items: Vec::new(),
                anchor,
            }),
            Event::MappingStart(_, anchor, _) => self.stack.push(Frame::Map {
                entries: Vec::new(),
                key: None,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor }) => (Node::Seq(items), anchor),
                    Some(Frame::Map {
                        entries, anchor, ..
                    }) => (Node::Map(merge_keys(entries)), anchor),
                    None => return Err(yaml_error(&span, "unbalanced collection")),
                };
                // Its children were counted as they arrived; add the collection itself.
                self.complete(node, anchor, 1, &span)?;
            }
            // Stream and document ends, and presentation-only events (comments, anchor
            // metadata) when a feature elsewhere in the build turns them on.
            _ => {}
        }
        Ok(())
    }

    /// Places a finished node in its parent (or as the root) and records its anchor.
    fn complete(
        &mut self,
        node: Node,
        anchor: usize,
        added: usize,
        span: &Span,
    ) -> Result<(), ConfigError> {
        self.nodes += added;
        if self.nodes > MAX_NODES {
            return Err(yaml_error(
                span,
                "the document is too large once aliases are expanded",
            ));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    *key = Some(match node {
                        Node::Null => String::new(),
                        Node::Scalar(text) => text,
                        Node::Seq(_) | Node::Map(_) => {
                            return Err(yaml_error(span, "a list or mapping used as a key"));
                        }
                    });
                }
            },
        }
        Ok(())
    }
}

/// The YAML 1.1/1.2 spellings of null, as PyYAML reads them.
fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Applies YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`), which PyYAML supports and
/// so LiteLLM configs may use: merged entries never override keys written in the
/// mapping itself, and earlier merged mappings win over later ones.
fn merge_keys(entries: Vec<(String, Node)>) -> Vec<(String, Node)> {
    if !entries.iter().any(|(key, _)| key == "<<") {
        return entries;
    }
    let explicit: Vec<String> = entries
        .iter()
        .filter(|(key, _)| key != "<<")
        .map(|(key, _)| key.clone())
        .collect();
    let mut merged: Vec<(String, Node)> = Vec::new();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        if key != "<<" {
            out.push((key, value));
            continue;
        }
        let sources = match value {
            Node::Map(map) => vec![map],
            Node::Seq(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Node::Map(map) => Some(map),
                    _ => None,
                })
                .collect(),
            // Not a mapping: keep it so the schema walk reports an unknown `<<` key.
            other => {
                out.push((key, other));
                continue;
            }
        };
        for (merged_key, merged_value) in sources.into_iter().flatten() {
            let seen = explicit.contains(&merged_key)
                || merged.iter().any(|(existing, _)| *existing == merged_key);
            if !seen {
                merged.push((merged_key, merged_value));
            }
        }
    }
    out.extend(merged);
    out
}
