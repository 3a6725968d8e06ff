//! The API reference at /docs is served whole by the app: the page and every file it loads,
//! transitively, answer 200 with their content type, and none of them makes the browser load
//! anything from another host (tests/docs/run.sh checks the same in a real browser).

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use tributary_tests::{TestApp, each_backend};
use url::Url;

/// What a browser loads from a file of this kind: the attributes, properties, CSS functions and
/// calls that fetch, and the URL literal each names.
fn loading_keywords(content_type: &str) -> &'static [&'static str] {
    if content_type.starts_with("text/html") {
        &["src", "href"]
    } else if content_type.starts_with("text/css") {
        &["url", "@import"]
    } else if content_type.starts_with("text/javascript") {
        &["src", "href", "fetch", "import", "importScripts"]
    } else {
        &[]
    }
}

/// The values of `keyword=…` / `keyword(…)` / `@import …` in `body`, quoted or not.
fn loaded_urls(body: &str, keywords: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for keyword in keywords {
        for (at, _) in body.match_indices(keyword) {
            let before = body[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '-')) {
                continue;
            }
            let rest = body[at + keyword.len()..].trim_start();
            let rest = if keyword.starts_with('@') {
                rest
            } else if let Some(rest) = rest.strip_prefix(['=', '(']) {
                rest.trim_start()
            } else {
                continue;
            };
            let value = match rest.chars().next() {
                Some(quote @ ('"' | '\'' | '`')) => rest[1..].split(quote).next().unwrap_or(""),
                _ => rest
                    .split(|c: char| c.is_whitespace() || matches!(c, ')' | ';' | ',' | '>'))
                    .next()
                    .unwrap_or(""),
            };
            found.push(value.to_string());
        }
    }
    found
}

/// `reference` resolved against `page`, when a browser would fetch it from the network; `None`
/// for what stays in the page (`data:`, `blob:`, fragments, expressions that are not URLs).
fn fetched(page: &Url, reference: &str) -> Option<Url> {
    let reference = reference.trim();
    let is_url = reference.starts_with("//")
        || reference.starts_with("http:")
        || reference.starts_with("https:")
        || reference.starts_with("ws:")
        || reference.starts_with("wss:")
        || reference.starts_with("./")
        || reference.starts_with("../")
        || reference.starts_with('/')
        || (reference.contains('.') && !reference.contains(['(', '+', ' ', '{', '[']));
    if !is_url || reference.starts_with("data:") || reference.starts_with("blob:") {
        return None;
    }
    page.join(reference).ok()
}

async fn reference_files(app: &TestApp) {
    let no_redirects = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let docs = no_redirects.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::TEMPORARY_REDIRECT);
    let page = Url::parse(&app.url("/docs"))
        .unwrap()
        .join(docs.headers()["location"].to_str().unwrap())
        .unwrap();
    assert_eq!(page.as_str(), app.url("/docs/"));

    let origin = Url::parse(&app.base).unwrap().origin();
    let mut queue = vec![(page.clone(), "text/html".to_string())];
    let mut seen = Vec::new();
    while let Some((url, expected_type)) = queue.pop() {
        if seen.contains(&url) {
            continue;
        }
        seen.push(url.clone());
        let reply = no_redirects.get(url.clone()).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{url}");
        let content_type = reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with(&expected_type),
            "{url} is {content_type}, expected {expected_type}"
        );
        if content_type.starts_with("text/") {
            assert!(
                content_type.ends_with("charset=utf-8"),
                "{url}: {content_type}"
            );
        }
        let csp = reply.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{url}: {csp}");
        }
        let body = String::from_utf8_lossy(&reply.bytes().await.unwrap()).into_owned();
        if url == page {
            assert!(body.contains("<title>Tributary API</title>"), "{body}");
        }
        for reference in loaded_urls(&body, loading_keywords(&content_type)) {
            let Some(target) = fetched(&url, &reference) else {
                continue;
            };
            assert_eq!(
                target.origin(),
                origin,
                "{url} makes the browser load {reference} from another host"
            );
            // Files the page itself loads are followed; what a script merely names is not.
            if content_type.starts_with("text/html") || content_type.starts_with("text/css") {
                let expected = match target.path().rsplit('.').next() {
                    Some("css") => "text/css",
                    Some("js") => "text/javascript",
                    Some("png") => "image/png",
                    other => panic!("{url} references {target}, of an unexpected kind {other:?}"),
                };
                queue.push((target, expected.to_string()));
            }
        }
    }
    let names: Vec<&str> = seen
        .iter()
        .map(|u| u.path().trim_start_matches("/docs/"))
        .collect();
    for file in [
        "",
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-initializer.js",
        "favicon-32x32.png",
    ] {
        assert!(
            names.contains(&file),
            "/docs/{file} was not loaded: {names:?}"
        );
    }
}

#[tokio::test]
async fn the_reference_and_everything_it_loads_come_from_the_app() {
    each_backend(|app| async move {
        reference_files(&app).await;
    })
    .await;
}

#[tokio::test]
async fn the_reference_reads_this_apps_spec_and_nothing_else() {
    each_backend(|app| async move {
        let init = app
            .client
            .get(app.url("/docs/swagger-initializer.js"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The spec by path, no public validator (Swagger UI's default loads a badge from one),
        // no spec URL from the query string, and no URL of any host at all.
        for setting in [
            r#""url": "/openapi.json""#,
            r#""validatorUrl": "none""#,
            r#""queryConfigEnabled": false"#,
            r#""layout": "BaseLayout""#,
        ] {
            assert!(init.contains(setting), "{setting} missing from {init}");
        }
        assert!(
            !init.contains("http://") && !init.contains("https://"),
            "{init}"
        );
        let spec = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(spec.status(), StatusCode::OK);
        assert_eq!(spec.headers()["content-type"], "application/json");

        let missing = app
            .client
            .get(app.url("/docs/nothing-here.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            missing.headers()["content-type"],
            "application/problem+json"
        );
        let post = app.client.post(app.url("/docs/")).send().await.unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()["allow"], "GET");
    })
    .await;
}

#[test]
fn the_scanner_sees_what_a_browser_would_load() {
    let page = Url::parse("http://127.0.0.1:1/docs/").unwrap();
    let html = r#"<link href="./a.css"><script src='https://cdn.example.com/x.js'></script><a data-src="x">"#;
    let found = loaded_urls(html, loading_keywords("text/html"));
    assert_eq!(found, ["https://cdn.example.com/x.js", "./a.css"]);
    let css = r#"@font-face{src:url(https://fonts.example.com/f.woff2)} a{background:url("data:image/png;base64,AA")} @import "//x.example/y.css";"#;
    let external: Vec<Url> = loaded_urls(css, loading_keywords("text/css"))
        .iter()
        .filter_map(|r| fetched(&page, r))
        .collect();
    assert_eq!(external.len(), 2, "{external:?}");
    assert!(external.iter().all(|u| u.host_str() != Some("127.0.0.1")));
    let js = r#"fetch("https://telemetry.example.com/e");s.src=`//cdn.example.com/m.js`;fetch(u)"#;
    let external: Vec<Url> = loaded_urls(js, loading_keywords("text/javascript"))
        .iter()
        .filter_map(|r| fetched(&page, r))
        .collect();
    assert_eq!(external.len(), 2, "{external:?}");
}
