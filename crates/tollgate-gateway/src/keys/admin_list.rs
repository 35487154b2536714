//! `GET /key/list`, in LiteLLM's shape: `?page=1&size=10` (size 1 to
//! 100), filtered by `team_id`, `user_id`, `key_alias`, `key_hash`; each
//! key as its hex hash, or with `return_full_object=true` as `/key/info`
//! shows it — never its text →
//! `{"keys": [...], "total_count": n, "current_page": p, "total_pages": t}`.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use tollgate_core::Failure;

use super::generate::bad_request;
use super::view::{View, json, query_param};
use super::{Keys, ListFilter};
use crate::key_format::to_hex;

/// The most keys on one page, as LiteLLM.
const MAX_SIZE: u64 = 100;
const DEFAULT_SIZE: u64 = 10;

/// What `/key/list` asks for.
#[derive(Debug, PartialEq, Eq)]
struct ListQuery {
    page: u64,
    size: u64,
    full: bool,
    filter: ListFilter,
}

fn parse(query: &str) -> Result<ListQuery, Failure> {
    let number = |name: &'static str, default: u64, max: u64| -> Result<u64, Failure> {
        match query_param(query, name)? {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    bad_request(
                        format!("{name} must be a whole number from 1 to {max}"),
                        Some(name),
                    )
                }),
        }
    };
    let text = |name: &'static str| -> Result<Option<String>, Failure> {
        Ok(query_param(query, name)?.filter(|value| !value.is_empty()))
    };
    let full = match query_param(query, "return_full_object")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(bad_request(
                "return_full_object must be true or false",
                Some("return_full_object"),
            ));
        }
    };
    Ok(ListQuery {
        page: number("page", 1, u64::from(u32::MAX))?,
        size: number("size", DEFAULT_SIZE, MAX_SIZE)?,
        full,
        filter: ListFilter {
            team_id: text("team_id")?,
            user_id: text("user_id")?,
            key_alias: text("key_alias")?,
            key_hash: text("key_hash")?,
        },
    })
}

/// `GET /key/list?...` (see the module docs).
pub(crate) async fn list(keys: &Keys, query: Option<&str>) -> Response<Bytes> {
    let query = match parse(query.unwrap_or_default()) {
        Ok(query) => query,
        Err(failure) => return failure.to_response(),
    };
    let found = keys.list(&query.filter).await;
    let total = found.len() as u64;
    // `page` and `size` are at least 1; past the end is an empty page.
    let skip = usize::try_from((query.page - 1).saturating_mul(query.size)).unwrap_or(usize::MAX);
    let take = usize::try_from(query.size).unwrap_or(usize::MAX);
    let page = found.iter().skip(skip).take(take);

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Listed<'a> {
        Token(String),
        Full(Box<View<'a>>),
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        keys: Vec<Listed<'a>>,
        total_count: u64,
        current_page: u64,
        total_pages: u64,
    }
    let answer = Answer {
        keys: page
            .map(|key| match query.full {
                true => Listed::Full(Box::new(View::of(key, None))),
                false => Listed::Token(to_hex(&key.hash)),
            })
            .collect(),
        total_count: total,
        current_page: query.page,
        total_pages: total.div_ceil(query.size),
    };
    json(StatusCode::OK, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_has_litellms_defaults_and_bounds() {
        let query = parse("").unwrap();
        assert_eq!((query.page, query.size, query.full), (1, 10, false));
        assert_eq!(query.filter, ListFilter::default());
        let query =
            parse("page=2&size=100&team_id=t%201&user_id=u&key_alias=a&key_hash=ab&return_full_object=true")
                .unwrap();
        assert_eq!((query.page, query.size, query.full), (2, 100, true));
        assert_eq!(query.filter.team_id.as_deref(), Some("t 1"));
        assert_eq!(query.filter.user_id.as_deref(), Some("u"));
        assert_eq!(query.filter.key_alias.as_deref(), Some("a"));
        assert_eq!(query.filter.key_hash.as_deref(), Some("ab"));
        for bad in [
            "page=0",
            "size=0",
            "size=101",
            "page=x",
            "return_full_object=yes",
        ] {
            let failure = parse(bad).unwrap_err();
            assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
