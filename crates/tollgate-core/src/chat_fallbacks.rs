//! The fallbacks a chat request names in its own body — LiteLLM's
//! "client-side fallbacks" — read where the request is parsed, and cut out
//! of the bytes that go upstream (no provider knows these members, and some
//! refuse unknown ones).

use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::class::ErrorClass;
use crate::failure::Failure;

/// The body members read here, in the order of [`RequestFallbacks`]'s fields.
pub(crate) const MEMBERS: [&str; 3] = [
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
];

/// The fallback lists a request named in its body (LiteLLM's client-side
/// fallbacks: `"fallbacks": ["claude-sonnet", "gpt-4o-mini"]`), read once at
/// ingress by [`ChatRequest::parse`](crate::ChatRequest::parse).
///
/// A list that is present replaces, for this request, the configured
/// lists of the same kind (LiteLLM reads `kwargs.get("fallbacks",
/// self.fallbacks)`): its groups are tried in order after the requested
/// one, and no configured list of that kind applies on the way. An empty
/// list turns that kind of fallback off for the request. A request
/// extension (the gateway inserts it with the groups resolved), read by the
/// fallback cascade.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFallbacks {
    /// `fallbacks`: for any failure another model may fix.
    pub fallbacks: Option<Arc<[Arc<str>]>>,
    /// `context_window_fallbacks`: for a prompt longer than the model's
    /// context window (without it, `fallbacks` or the config's apply, as
    /// for the config's lists).
    pub context_window: Option<Arc<[Arc<str>]>>,
    /// `content_policy_fallbacks`: for a refusal.
    pub content_policy: Option<Arc<[Arc<str>]>>,
}

impl RequestFallbacks {
    /// Every group the lists name, in order, with repeats.
    pub fn groups(&self) -> impl Iterator<Item = &Arc<str>> {
        [&self.fallbacks, &self.context_window, &self.content_policy]
            .into_iter()
            .flatten()
            .flat_map(|list| list.iter())
    }

    /// The lists with each group replaced by `resolve`'s answer (an alias
    /// by the group it names, say), or the first name it refuses.
    ///
    /// # Errors
    ///
    /// The name `resolve` returned `None` for.
    pub fn resolved<F>(&self, mut resolve: F) -> Result<RequestFallbacks, Arc<str>>
    where
        F: FnMut(&str) -> Option<Arc<str>>,
    {
        let mut map = |list: &Option<Arc<[Arc<str>]>>| -> Result<_, Arc<str>> {
            list.as_ref()
                .map(|list| {
                    list.iter()
                        .map(|name| resolve(name).ok_or_else(|| name.clone()))
                        .collect::<Result<Arc<[Arc<str>]>, _>>()
                })
                .transpose()
        };
        Ok(RequestFallbacks {
            fallbacks: map(&self.fallbacks)?,
            context_window: map(&self.context_window)?,
            content_policy: map(&self.content_policy)?,
        })
    }
}

/// Reads the raw values of [`MEMBERS`] (`None` when absent) into
/// [`RequestFallbacks`], or a 400 naming the member that is not a list of
/// model names.
pub(crate) fn read(raw: [Option<&RawValue>; 3]) -> Result<Option<RequestFallbacks>, Failure> {
    if raw.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut lists: [Option<Arc<[Arc<str>]>>; 3] = Default::default();
    for ((slot, value), member) in lists.iter_mut().zip(raw).zip(MEMBERS) {
        let Some(value) = value else { continue };
        let invalid = || {
            Failure::new(
                ErrorClass::BadRequest,
                format!("`{member}` must be a list of model names"),
            )
            .with_param(member)
        };
        let names: Option<Vec<String>> =
            serde_json::from_str(value.get()).map_err(|_| invalid())?;
        // `null` says nothing: the config's lists apply.
        let Some(names) = names else { continue };
        if names.iter().any(String::is_empty) {
            return Err(invalid());
        }
        *slot = Some(names.into_iter().map(Arc::from).collect());
    }
    let [fallbacks, context_window, content_policy] = lists;
    Ok(Some(RequestFallbacks {
        fallbacks,
        context_window,
        content_policy,
    }))
}

/// `bytes` without the members whose values lie at `values` (spans of
/// `bytes`, in any order), each with its key and one separating comma; and
/// the ranges cut, in order (for [`shifted`]).
pub(crate) fn cut_members(bytes: &[u8], values: &mut [Range<usize>]) -> (Bytes, Vec<Range<usize>>) {
    values.sort_by_key(|span| span.start);
    let mut cuts: Vec<Range<usize>> = Vec::with_capacity(values.len());
    for value in values.iter() {
        // The comma before the member goes with it, unless the member opens
        // the object or that comma went with the member cut just before:
        // then the comma after it does.
        let key = key_start(bytes, value.start);
        let before = skip_whitespace_back(bytes, key);
        let comma_before = before > 0
            && bytes[before - 1] == b','
            && cuts.last().is_none_or(|cut| cut.end < before);
        let after = skip_whitespace(bytes, value.end);
        let cut = if comma_before {
            before - 1..value.end
        } else if bytes.get(after) == Some(&b',') {
            key..skip_whitespace(bytes, after + 1)
        } else {
            key..value.end
        };
        cuts.push(cut);
    }
    let kept = bytes.len() - cuts.iter().map(Range::len).sum::<usize>();
    let mut out = BytesMut::with_capacity(kept);
    let mut from = 0;
    for cut in &cuts {
        out.put_slice(&bytes[from..cut.start]);
        from = cut.end;
    }
    out.put_slice(&bytes[from..]);
    (out.freeze(), cuts)
}

/// Where an offset of the original bytes lies after `cuts` (sorted, from
/// [`cut_members`]) are taken out; the offset is outside every cut.
pub(crate) fn shifted(at: usize, cuts: &[Range<usize>]) -> usize {
    at - cuts
        .iter()
        .filter(|cut| cut.end <= at)
        .map(Range::len)
        .sum::<usize>()
}

/// The offset of the opening quote of the key whose value starts at
/// `value`: back over whitespace, the colon, whitespace, then the key's
/// string to its first quote that is not escaped.
fn key_start(bytes: &[u8], value: usize) -> usize {
    let colon = skip_whitespace_back(bytes, value).saturating_sub(1);
    let close = skip_whitespace_back(bytes, colon).saturating_sub(1);
    let mut at = close;
    while at > 0 {
        at -= 1;
        if bytes[at] == b'"' {
            let backslashes = bytes[..at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                return at;
            }
        }
    }
    at
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The offset just after the last non-whitespace byte before `at`.
fn skip_whitespace_back(bytes: &[u8], mut at: usize) -> usize {
    while at > 0 && bytes[at - 1].is_ascii_whitespace() {
        at -= 1;
    }
    at
}
