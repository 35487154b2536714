//! Azure's stream: OpenAI's events, minus the filter-only chunks.

use std::borrow::Cow;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use tollgate_core::sse::Event;
use tollgate_core::{ErrorClass, Failure};

use super::classify::{classify, content_policy};
use crate::events::TranslatedEvents;
use crate::protocol::TranslateEvent;

/// The state of one Azure stream.
#[derive(Debug, Default)]
pub struct AzureStream {
    committed: bool,
    finished: bool,
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default, borrow)]
    choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    usage: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(default)]
    content_filter_results: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

impl AzureStream {
    pub(crate) fn new() -> Self {
        AzureStream::default()
    }
}

impl TranslateEvent for AzureStream {
    fn event(&mut self, event: &Event, out: &mut TranslatedEvents) -> Result<(), Failure> {
        if event.is_done() {
            out.write_done();
            self.finished = true;
            return Ok(());
        }
        let chunk: ChunkView<'_> = serde_json::from_slice(&event.data).map_err(|_| {
            Failure::new(
                ErrorClass::UpstreamUnavailable,
                "the provider sent a stream event that could not be read",
            )
            .with_subkind("malformed_event")
        })?;
        if chunk.error.is_some() {
            return Err(classify(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                &event.data,
            ));
        }
        if chunk.choices.is_empty() && chunk.usage.is_none() {
            // `prompt_filter_results` and other annotations: nothing an
            // OpenAI client reads.
            return Ok(());
        }
        let mut content = false;
        for choice in &chunk.choices {
            if choice.finish_reason.as_deref() == Some("content_filter") && !self.committed {
                let categories: Vec<String> = choice
                    .content_filter_results
                    .iter()
                    .flatten()
                    .filter(|(_, r)| r["filtered"] == Value::Bool(true))
                    .map(|(c, _)| c.clone())
                    .collect();
                return Err(content_policy(&categories, None, "completion"));
            }
            let delta = choice.delta.as_ref();
            content |= choice.finish_reason.is_some()
                || delta.is_some_and(|d| {
                    d.tool_calls.is_some() || d.content.as_deref().is_some_and(|c| !c.is_empty())
                });
        }
        self.committed |= content;
        out.write_data(&event.data);
        Ok(())
    }

    fn committed(&self) -> bool {
        self.committed
    }

    fn finished(&self) -> bool {
        self.finished
    }
}
