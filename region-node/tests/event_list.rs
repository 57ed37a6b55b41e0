//! The event list pages with a cursor: following `Link: <…>; rel="next"` walks every event
//! exactly once, in start order; a bad cursor or page size is a 400 that names it.

mod common;

use common::Api;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn following_the_next_links_walks_every_event_exactly_once_in_order() {
    let api = Api::start().await;
    // Eleven events; three share a start time, so the id breaks the tie.
    let mut made = Vec::new();
    for i in 0..11 {
        let starts = if (4..7).contains(&i) {
            "2031-05-05T20:00:00Z".to_owned()
        } else {
            format!("2031-0{}-01T20:00:00Z", 1 + i % 9)
        };
        let answer = api
            .post(
                "/events",
                Some(&api.admin),
                json!({"name": format!("Night {i}"), "venue": "Hall", "startsAt": starts,
                       "homeRegion": "us-east", "tiers": [{"name": "GA", "priceCents": 100}]}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        made.push((
            answer.body["startsAt"].as_str().unwrap().to_owned(),
            answer.body["id"].as_str().unwrap().parse::<u64>().unwrap(),
        ));
    }
    made.sort();

    for limit in [1, 3, 4, 11, 20] {
        let mut seen = Vec::new();
        let mut path = format!("/events?limit={limit}");
        let mut pages = 0;
        loop {
            let page = api.get(&path, None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let events = page.body.as_array().unwrap();
            assert!(events.len() <= limit, "{path}: {} events", events.len());
            seen.extend(events.iter().map(|e| {
                (
                    e["startsAt"].as_str().unwrap().to_owned(),
                    e["id"].as_str().unwrap().parse::<u64>().unwrap(),
                )
            }));
            pages += 1;
            let Some(link) = page.headers.get("link") else {
                break;
            };
            let link = link.to_str().unwrap();
            let next = link
                .strip_prefix("</api/v1")
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("not a next link: {link}"));
            path = next.to_owned();
        }
        assert_eq!(seen, made, "page size {limit}");
        assert!(
            pages >= made.len() / limit,
            "page size {limit}: {pages} pages"
        );
    }
}

#[tokio::test]
async fn a_bad_cursor_or_page_size_is_refused_by_name() {
    let api = Api::start().await;
    for path in [
        "/events?after=yesterday",
        "/events?after=1.x",
        "/events?limit=0",
        "/events?limit=501",
    ] {
        let answer = api.get(path, None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.body
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("after") || message.contains("limit"),
            "{path}: {message}"
        );
    }
}
