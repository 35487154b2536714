//! `GET /v1/models` (OpenAI's list), `GET /v1/models/{id}` (OpenAI's Model
//! object) and LiteLLM's `GET /model/info` (and `/v1/model/info`): what a
//! key may see of the model groups, from the
//! [`ModelCatalog`](crate::model_info::ModelCatalog).

use http::{Response, StatusCode};

use super::App;
use crate::access_log::AccessLog;
use crate::keys::Principal;
use crate::model_info::Viewer;
use crate::response::GatewayBody;

/// The paths under which a model's id follows.
pub(super) const MODEL_PREFIXES: [&str; 2] = ["/v1/models/", "/models/"];

/// `GET /v1/models/{id}`: the Model object, or OpenAI's 404 for a model
/// that does not exist or that the key may not use.
pub(super) fn retrieve(
    app: &App,
    path: &str,
    principal: &Principal,
    log: &mut AccessLog,
) -> Response<GatewayBody> {
    let raw = MODEL_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .unwrap_or_default();
    let id = percent_decoded(raw);
    let group = app
        .routing
        .group(&app.groups, &id)
        .map(|g| g.name().clone());
    let allows = |group: &str| principal.allows_model(group);
    let viewer = Viewer {
        admin: principal.virtual_key().is_none(),
        allows: &allows,
    };
    match app.catalog.model(&id, group.as_deref(), viewer) {
        Ok(body) => super::json_response(StatusCode::OK, body),
        Err(failure) => {
            log.class = Some(failure.class());
            failure.to_response()
        }
    }
}

/// `GET /v1/models`: the model groups in OpenAI's list shape; a virtual
/// key limited to some models sees those only (as LiteLLM lists a key's
/// models), a key for every model the list built at start.
pub(super) fn list(app: &App, principal: &Principal) -> Response<GatewayBody> {
    let limited = principal
        .virtual_key()
        .is_some_and(|key| !key.models.is_empty() && !key.models.iter().any(|m| m == "*"));
    if !limited {
        return super::json_response(StatusCode::OK, app.models_body.clone());
    }
    // Rare (a limited key listing its models): filtering the list built
    // at start keeps one source for its entries.
    let mut list: serde_json::Value = serde_json::from_slice(&app.models_body).unwrap_or_default();
    if let Some(data) = list
        .get_mut("data")
        .and_then(serde_json::Value::as_array_mut)
    {
        data.retain(|model| {
            model["id"]
                .as_str()
                .is_some_and(|id| principal.allows_model(id))
        });
    }
    super::json_response(StatusCode::OK, bytes::Bytes::from(list.to_string()))
}

/// `GET /model/info`: every deployment of the groups the key may use, with
/// its public facts.
pub(super) fn info(app: &App, principal: &Principal) -> Response<GatewayBody> {
    let allows = |group: &str| principal.allows_model(group);
    let viewer = Viewer {
        admin: principal.virtual_key().is_none(),
        allows: &allows,
    };
    super::json_response(StatusCode::OK, app.catalog.info(viewer))
}

/// A path segment with its `%XX` escapes decoded (model ids may hold `/`
/// or `:`, which clients escape); as it came when it does not decode to
/// UTF-8.
fn percent_decoded(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decoded("openai%2Fgpt-4o"), "openai/gpt-4o");
        assert_eq!(percent_decoded("plain"), "plain");
        assert_eq!(percent_decoded("a%2"), "a%2");
        assert_eq!(percent_decoded("a%zz"), "a%zz");
        assert_eq!(percent_decoded("%ff"), "%ff");
    }
}
