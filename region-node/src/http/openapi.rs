//! The API's OpenAPI 3.1 document, generated from the code: the handlers' `#[utoipa::path]`
//! attributes and the schemas of the request and answer types (in their feature modules) make
//! `ApiDoc`, with the error answers every operation shares (`answers`) and what every
//! operation of a kind can answer (`Everywhere`). `document` serves it, with this deployment's
//! regions filled in.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use wire::ErrorEnvelope;

use crate::config::Config;
use crate::http::answers::{
    header, BadRequest, Conflict, Forbidden, KeyReused, Misdirected, NotFound, PayloadTooLarge,
    Timeout, TooManyRequests, Unauthorized, Unavailable, EVERY_ANSWER, READ_ANSWER,
};
use crate::http::{auth, booking, events, ops, queue, queue_place, streams, tickets, users};
use crate::queue::views::QueueFigures;
use crate::state::Node;
use crate::streams::state::{StreamState, StreamTier};

/// The security scheme of every operation that needs a caller (`security(("bearer" = []))`).
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Global ticketing API",
        version = "1",
        description = "Browse events and book tickets in any region. Send every request to your \
            own region's router: reads are answered in the region, writes go to the event's home \
            region. Every error is the one JSON envelope `{\"error\": {\"code\", \"message\", \
            \"status\"}}`. The same document is served by every node and every router at \
            `GET /api/v1/openapi.json`."
    ),
    paths(
        users::create,
        users::get,
        auth::login,
        auth::refresh,
        auth::logout,
        events::list,
        events::create,
        events::get,
        queue_place::me,
        queue_place::pass,
        queue::put,
        queue::get,
        queue::join,
        streams::stream,
        tickets::availability,
        tickets::create,
        tickets::get,
        booking::reserve,
        booking::confirm,
        booking::cancel,
        booking::for_user,
        booking::get,
        document,
        ops::healthz,
        ops::readyz,
    ),
    components(
        schemas(ErrorEnvelope, StreamState, StreamTier, QueueFigures),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            KeyReused,
            Misdirected,
            TooManyRequests,
            Unavailable,
            Timeout,
        ),
    ),
    modifiers(&Everywhere),
    tags(
        (name = "users", description = "Sign-up and user records"),
        (name = "auth", description = "Login, refresh and logout: access and refresh tokens"),
        (name = "events", description = "What is on sale"),
        (name = "queue", description = "Waiting rooms of queued on-sales: a fair draw at opening, a serving counter, places and passes"),
        (name = "tickets", description = "Tickets and what is left"),
        (name = "booking", description = "Reserve, confirm, cancel: the booking's life"),
        (name = "operations", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "getOpenApi",
    tag = "operations",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json",
            body = Object),
    )
)]
pub async fn document(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(document_for(&node.config))
}

/// The document as this deployment serves it: `ApiDoc` with the configured regions listed
/// where a request names one.
pub fn document_for(config: &Config) -> Value {
    // A struct of strings, maps and JSON values always serializes.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    spell_links_as_the_spec(&mut doc);
    let regions: Vec<Value> = config.regions.iter().map(|r| json!(r.name)).collect();
    if let Some(Value::Object(home)) =
        doc.pointer_mut("/components/schemas/NewEvent/properties/homeRegion")
    {
        home.insert("enum".into(), Value::Array(regions));
    }
    doc
}

/// utoipa 5 writes a Link object's fields in snake case (`operation_id`, `request_body`); the
/// specification spells them in camel case, which is what clients follow.
fn spell_links_as_the_spec(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut().filter_map(Value::as_object_mut) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(field) = link.remove(snake) {
                            link.insert(camel.into(), field);
                        }
                    }
                }
            }
            map.values_mut().for_each(spell_links_as_the_spec);
        }
        Value::Array(items) => items.iter_mut().for_each(spell_links_as_the_spec),
        _ => {}
    }
}

/// What every operation can answer, added to each so that no handler repeats it: `429` (rate
/// limits), `503` (overload, an unreachable region) and `504` (the time limit) anywhere; `413`
/// wherever a body is read. Also the bearer security scheme, the headers every answer carries,
/// and a regional read's freshness headers on the `200` of every `GET` of the API.
struct Everywhere;

impl Modify for Everywhere {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let operations = [
                (true, &mut item.get),
                (false, &mut item.post),
                (false, &mut item.put),
                (false, &mut item.delete),
                (false, &mut item.patch),
            ];
            for (get, operation) in operations {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, name: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| Ref::from_response_name(name).into());
                };
                add("429", "TooManyRequests");
                add("503", "Unavailable");
                add("504", "Timeout");
                if operation.request_body.is_some() {
                    add("413", "PayloadTooLarge");
                }
                // A read of the API (not of operations) is answered from the region's data.
                let regional_read =
                    get && !operation.tags.iter().flatten().any(|t| t == "operations");
                for (status, answer) in responses.iter_mut() {
                    let RefOr::T(answer) = answer else { continue };
                    // A stream carries its own headers, not a read's freshness ones.
                    let streamed = answer.content.contains_key(wire::stream::CONTENT_TYPE);
                    let read = regional_read && status.as_str() == "200" && !streamed;
                    let extra = if read { &READ_ANSWER[..] } else { &[] };
                    for (name, about, kind) in EVERY_ANSWER.iter().chain(extra) {
                        answer
                            .headers
                            .entry((*name).to_owned())
                            .or_insert_with(|| header(about, kind.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::booking::request::{CancelRequest, ConfirmRequest, ReserveRequest};
    use crate::catalog::events::NewEvent;
    use crate::catalog::tickets::CreateTickets;
    use crate::http::ROUTES;
    use crate::identity::sessions::{LoginRequest, RefreshRequest};
    use crate::identity::signup::NewUser;
    use crate::queue::settings::QueueSettings;

    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

    fn doc() -> Value {
        document_for(&Config::default())
    }

    /// (method, path, operation) of every operation.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    all.push((method.to_owned(), path.clone(), operation.clone()));
                }
            }
        }
        all
    }

    /// Every `$ref` anywhere in `value`.
    fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        // Only the specification's field names: no snake case (see `spell_links_as_the_spec`).
        let text = doc.to_string();
        for snake in ["\"operation_id\"", "\"request_body\"", "\"operation_ref\""] {
            assert!(!text.contains(snake), "{snake} in the document");
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for reference in all {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| {
                panic!("{reference} points outside the document");
            });
            assert!(
                doc.pointer(pointer).is_some(),
                "{reference} resolves to nothing"
            );
        }
    }

    #[test]
    fn every_registered_route_is_documented_and_nothing_else() {
        let documented: BTreeSet<(String, String)> = operations(&doc())
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        assert_eq!(
            routed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "routes without docs"
        );
        assert_eq!(
            documented.difference(&routed).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "docs without routes"
        );
    }

    #[test]
    fn every_operation_has_its_parameters_answers_and_security() {
        let doc = doc();
        let mut ids = BTreeSet::new();
        for (method, path, operation) in operations(&doc) {
            let name = format!("{method} {path}");
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "{name}: operationId {id} twice");
            assert!(operation["summary"].is_string(), "{name}: no summary");
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let param = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    parameters
                        .iter()
                        .any(|p| p["name"] == param && p["in"] == "path" && p["required"] == true),
                    "{name}: path parameter {param} undocumented"
                );
            }
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{name}: no success"
            );
            for status in ["429", "503", "504"] {
                assert!(responses.contains_key(status), "{name}: no {status}");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413"] {
                    assert!(responses.contains_key(status), "{name}: no {status}");
                }
            }
            if operation.get("security").is_some() {
                assert!(responses.contains_key("401"), "{name}: no 401");
            }
            for (status, answer) in responses {
                let answer = match answer.get("$ref").and_then(Value::as_str) {
                    Some(r) => doc.pointer(&r[1..]).unwrap(),
                    None => answer,
                };
                assert!(answer["description"].is_string(), "{name} {status}");
                assert!(
                    answer["headers"].get("X-Request-Id").is_some(),
                    "{name} {status}: no X-Request-Id"
                );
                let error = status.starts_with('4') || status.starts_with('5');
                // `/readyz` answers `503` with its checks, not an error.
                if error && path != "/readyz" {
                    assert_eq!(
                        answer["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorEnvelope",
                        "{name} {status}"
                    );
                }
            }
        }
        let limited = doc["components"]["responses"]["TooManyRequests"]["headers"].clone();
        for header in ["Retry-After", "RateLimit", "RateLimit-Policy"] {
            assert!(limited.get(header).is_some(), "429 without {header}");
        }
    }

    #[test]
    fn reserve_links_to_confirm_and_cancel_with_its_booking_id_and_every_link_leads_somewhere() {
        let doc = doc();
        let operations = operations(&doc);
        let by_id: BTreeMap<&str, &Value> = operations
            .iter()
            .map(|(_, _, op)| (op["operationId"].as_str().unwrap(), op))
            .collect();
        let mut links = 0;
        for (_, _, operation) in &operations {
            for answer in operation["responses"].as_object().unwrap().values() {
                for (name, link) in answer["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = link["operationId"].as_str().unwrap();
                    let target = by_id
                        .get(target)
                        .unwrap_or_else(|| panic!("link {name} to no operation {target}"));
                    for parameter in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|p| p.0)
                    {
                        assert!(
                            target["parameters"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|p| p["name"] == parameter.as_str()),
                            "link {name}: the target has no parameter {parameter}"
                        );
                    }
                    if !link["requestBody"].is_null() {
                        assert!(target.get("requestBody").is_some(), "link {name}: no body");
                    }
                }
            }
        }
        assert!(links >= 10, "{links} links");
        let reserved = &by_id["reserve"]["responses"]["201"]["links"];
        for (link, target) in [("confirm", "confirm"), ("cancel", "cancel")] {
            assert_eq!(reserved[link]["operationId"], target);
            assert_eq!(
                reserved[link]["requestBody"]["bookingId"],
                "$response.body#/bookingId"
            );
        }
        let confirmed = &by_id["confirm"]["responses"]["200"]["links"];
        assert_eq!(
            confirmed["cancel"]["requestBody"]["bookingId"],
            "$response.body#/bookingId"
        );
    }

    fn reads<T: DeserializeOwned>(example: &Value) -> bool {
        serde_json::from_value::<T>(example.clone()).is_ok()
    }

    #[test]
    fn every_request_body_has_examples_that_are_requests() {
        let doc = doc();
        let parsers: BTreeMap<&str, fn(&Value) -> bool> = BTreeMap::from([
            ("NewUser", reads::<NewUser> as fn(&Value) -> bool),
            ("LoginRequest", reads::<LoginRequest>),
            ("RefreshRequest", reads::<RefreshRequest>),
            ("NewEvent", reads::<NewEvent>),
            ("CreateTickets", reads::<CreateTickets>),
            ("ReserveRequest", reads::<ReserveRequest>),
            ("ConfirmRequest", reads::<ConfirmRequest>),
            ("CancelRequest", reads::<CancelRequest>),
            ("QueueSettings", reads::<QueueSettings>),
        ]);
        let mut seen = BTreeSet::new();
        for (method, path, operation) in operations(&doc) {
            let Some(body) = operation.get("requestBody") else {
                continue;
            };
            let reference = body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: a body with no named schema"));
            let name = reference.rsplit('/').next().unwrap();
            let parse = parsers
                .get(name)
                .unwrap_or_else(|| panic!("{method} {path}: {name}'s examples are not tested"));
            let schema = &doc["components"]["schemas"][name];
            let examples: Vec<&Value> = schema["examples"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(schema.get("example"))
                .collect();
            assert!(!examples.is_empty(), "{name} has no example");
            for example in examples {
                assert!(parse(example), "{name}'s example is no request: {example}");
            }
            seen.insert(name.to_owned());
        }
        assert_eq!(seen.len(), parsers.len(), "request types without a route");
    }

    #[test]
    fn the_live_stream_is_documented_as_server_sent_events() {
        let doc = doc();
        let operation = &doc["paths"]["/api/v1/events/{id}/stream"]["get"];
        let ok = &operation["responses"]["200"];
        assert!(ok["content"]["text/event-stream"].is_object(), "{ok}");
        assert!(ok["headers"].get("X-Request-Id").is_some());
        assert!(ok["headers"].get("X-Accel-Buffering").is_some());
        // Not a cached read: no freshness headers.
        assert!(ok["headers"].get("X-Cache").is_none(), "{ok}");
        assert!(operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Last-Event-ID" && p["in"] == "header"));
        assert!(doc["components"]["schemas"]["StreamState"]["properties"]["queue"].is_object());
    }

    #[test]
    fn the_served_document_names_the_configured_regions() {
        let config = Config::default();
        let served = document_for(&config);
        let regions: Vec<Value> = config.regions.iter().map(|r| json!(r.name)).collect();
        assert!(regions.len() > 1);
        assert_eq!(
            served["components"]["schemas"]["NewEvent"]["properties"]["homeRegion"]["enum"],
            json!(regions)
        );
    }
}
