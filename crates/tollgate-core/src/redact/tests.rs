use http::HeaderValue;
use proptest::prelude::*;

use super::*;
use crate::ErrorClass;

/// Key shapes as providers issue them.
const OPENAI: &str = "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL";
const PROJECT: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn";
const OPENROUTER: &str =
    "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ANTHROPIC: &str = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa";
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SESSION: &str = "ASIAY34FZKBOKMUTVV7A";
const GOOGLE: &str = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";

/// The positions the issue found keys in, around `key`.
fn glued(key: &str) -> Vec<String> {
    vec![
        format!("Incorrect API key provided: {key}."),
        format!("request failed: key={key}"),
        format!(r#"bad credentials {{"api_key":"{key}"}}"#),
        format!("header x-api-key:{key} rejected"),
        format!("GET /internal/{key} returned 401"),
        format!("apikey{key}"),
        format!("({key})"),
        format!("'{key}'"),
        format!("Authorization: Bearer {key}"),
    ]
}

#[test]
fn every_key_shape_is_redacted_wherever_it_is_glued() {
    for key in [
        OPENAI,
        PROJECT,
        OPENROUTER,
        ANTHROPIC,
        AWS,
        AWS_SESSION,
        GOOGLE,
    ] {
        for text in glued(key) {
            let clean = sanitize_message(&text);
            assert!(!clean.contains(key), "{key} survives in {clean:?}");
            // Not even its random part.
            assert!(!clean.contains(&key[key.len() - 12..]), "{clean:?}");
            assert!(clean.contains(MARKER), "{clean:?}");
        }
    }
}

#[test]
fn the_text_around_a_key_stays() {
    assert_eq!(
        sanitize_message(&format!("request failed: key={OPENAI}, retry later")),
        "request failed: key=[redacted], retry later"
    );
    assert_eq!(
        sanitize_message(&format!(r#"bad credentials {{"api_key":"{PROJECT}"}}"#)),
        r#"bad credentials {"api_key":"[redacted]"}"#
    );
    assert_eq!(
        sanitize_message(&format!("GET /internal/{OPENROUTER} returned 401")),
        "GET /internal/[redacted] returned 401"
    );
}

#[test]
fn keys_urls_and_bearer_tokens_are_redacted() {
    let text = "Incorrect API key provided: sk-abcdef1234567890. See https://internal.example:8443/x \
                header Bearer abc.def";
    let clean = sanitize_message(text);
    assert!(!clean.contains("sk-abcdef"), "{clean}");
    assert!(!clean.contains("internal.example"), "{clean}");
    assert!(!clean.contains("abc.def"), "{clean}");
    assert!(clean.starts_with("Incorrect API key provided: [redacted]"));
    assert_eq!(
        sanitize_message(r#"{"authorization":"Bearer: short"}"#),
        r#"{"authorization":"Bearer: [redacted]"}"#
    );
}

#[test]
fn a_json_web_token_is_redacted_whole() {
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NvZ25pdGl2ZSJ9.SIGNATURE-part_2";
    let text = format!("Access denied due to invalid token {token}. Retry.");
    let clean = sanitize_message(&text);
    assert_eq!(
        clean,
        "Access denied due to invalid token [redacted] Retry."
    );
    // A configured one, too, whatever redacted it first.
    let mut secrets = Secrets::new();
    secrets.insert(token);
    let redactor = Redactor::new(secrets);
    let once = redactor.redact(&sanitize_message(&format!("token {token}")));
    assert!(!once.contains("SIGNATURE"), "{once}");
    // Dotted words are not tokens.
    let words = "see eyJ.docs.example and eyJhbGciOiJub25lIn0.x for version eyJ1.2";
    assert_eq!(sanitize_message(words), words);
}

#[test]
fn a_google_access_token_is_redacted_whole() {
    // Vertex AI's bearer token comes at run time: no configured secret
    // knows it, its shape does.
    let text = "Request had invalid authentication credentials: Bearer? ya29.fake-access-token-1-9e3779b1 (401)";
    let clean = sanitize_message(text);
    assert!(!clean.contains("9e3779b1"), "{clean}");
    assert!(!clean.contains("fake-access"), "{clean}");
    let long = format!("token={}", "ya29.a0AfB_byC".to_owned() + &"x1".repeat(90));
    assert!(!sanitize_message(&long).contains("a0AfB"));
    // Not a token: too short, or the tail of another word.
    for words in ["see ya29.x later", "gaya29.abcdefghijk"] {
        assert_eq!(sanitize_message(words), words);
    }
}

#[test]
fn ordinary_text_is_kept_and_length_bounded() {
    for text in [
        "This model's maximum context length is 8192 tokens.",
        "Invalid api_key: check your settings",
        "task-specific instructions are not supported",
        "The model `deepseek/deepseek-chat-v3-0324:free` does not exist.",
        "messages[0].content: expected a string, found 12",
        "Rate limit reached for gpt-4o-mini in organization org on tokens per min (TPM)",
    ] {
        assert_eq!(sanitize_message(text), text);
    }
    let long = "é".repeat(2000);
    assert!(sanitize_message(&long).len() <= MAX_MESSAGE_LEN);
}

#[test]
fn control_and_invisible_characters_go_and_hide_nothing() {
    assert_eq!(sanitize_message("a\u{0}b\nc\u{200B}d\u{FEFF}"), "abcd");
    let secrets: Secrets = ["plainsecretvalue"].into_iter().collect();
    let redactor = Redactor::new(secrets);
    for text in [
        "x plainsec\u{200B}retvalue y",
        "x plainsec\u{7}retvalue y",
        r"x plainsec\u0000retvalue y",
        "x plainsec%00retvalue y",
        "x plainsec\\nretvalue y",
    ] {
        assert_eq!(redactor.redact(text), "x [redacted] y", "{text:?}");
    }
}

#[test]
fn a_configured_secret_is_found_in_every_encoding() {
    let secret = r#"p@ss/w0rd+"quoted"\x"#;
    let redactor = Redactor::new([secret].into_iter().collect());
    let url = "p%40ss%2Fw0rd%2B%22quoted%22%5Cx";
    let json = r#"p@ss/w0rd+\"quoted\"\\x"#;
    let json_slash = r#"p@ss\/w0rd+\"quoted\"\\x"#;
    let unicode: String = secret
        .chars()
        .map(|c| format!("\\u{:04X}", c as u32))
        .collect();
    let url_in_json = url.to_owned();
    let json_in_url = "p%40ss%2Fw0rd%2B%5C%22quoted%5C%22%5C%5Cx";
    let partly = "p%40ss/w0rd+%22quoted\"\\x";
    let double = "p%2540ss%252Fw0rd%252B%2522quoted%2522%255Cx";
    for form in [
        secret,
        url,
        &url.to_lowercase(),
        json,
        json_slash,
        &unicode,
        &url_in_json,
        json_in_url,
        partly,
        double,
    ] {
        for text in [
            format!("error: {form}"),
            format!("{form} error"),
            format!("glued{form}glued"),
            format!(r#"{{"password":"{form}"}}"#),
        ] {
            let clean = redactor.redact(&text);
            assert!(!clean.contains(form), "{form} survives in {clean:?}");
            assert!(!clean.contains("quoted"), "{clean:?}");
            assert!(clean.contains(MARKER));
        }
    }
}

#[test]
fn a_secret_of_no_particular_shape_is_matched_exactly() {
    // Lower-case letters only: no shape rule would catch it.
    let redactor = Redactor::new(["correcthorsebattery"].into_iter().collect());
    assert_eq!(
        redactor.redact("/internal/correcthorsebattery/v1 and correcthorsebatteryx"),
        "/internal/[redacted]/v1 and [redacted]x"
    );
    assert_eq!(
        sanitize_message("/internal/correcthorsebattery/v1"),
        "/internal/correcthorsebattery/v1",
        "without the secret, nothing marks it"
    );
}

#[test]
fn the_presented_credential_is_redacted_whole_and_as_a_token() {
    let redactor =
        Redactor::default().with_presented(HeaderValue::from_static("Bearer client-chosen-key"));
    assert_eq!(
        redactor.redact("unknown key client-chosen-key (client-chosen%2Dkey)"),
        "unknown key [redacted] ([redacted])"
    );
    let redactor = Redactor::default().with_presented(HeaderValue::from_static("plainclientkey"));
    assert_eq!(redactor.redact("key plainclientkey"), "key [redacted]");
}

#[test]
fn a_failure_has_message_param_and_code_redacted() {
    let secrets: Secrets = ["correcthorsebattery"].into_iter().collect();
    let failure = Failure::new(ErrorClass::BadRequest, "bad key correcthorsebattery")
        .with_param("messages[correcthorsebattery]")
        .with_code("x-correcthorsebattery");
    let shown = Redactor::new(secrets).redact_failure(&failure);
    let body = String::from_utf8(shown.to_openai_body().to_vec()).unwrap();
    assert!(!body.contains("correcthorse"), "{body}");
    assert_eq!(shown.message(), "bad key [redacted]");
    assert_eq!(shown.class(), ErrorClass::BadRequest);
}

#[test]
fn headers_are_passed_as_they_are_unless_they_hold_a_secret() {
    let redactor = Redactor::new(["correcthorsebattery"].into_iter().collect());
    let plain = HeaderValue::from_static("application/json; charset=utf-8");
    assert_eq!(redactor.header(plain.clone()), Some(plain));
    let mut leaky = HeaderValue::from_static("application/json; key=correcthorsebattery");
    leaky.set_sensitive(true);
    let shown = redactor.header(leaky).unwrap();
    assert_eq!(shown, "application/json; key=[redacted]");
    assert!(shown.is_sensitive());
    let shaped = HeaderValue::from_str(&format!("limit for {OPENROUTER}")).unwrap();
    assert_eq!(redactor.header(shaped).unwrap(), "limit for [redacted]");
}

#[test]
fn a_cut_never_leaves_part_of_a_key() {
    // The key starts just before the length bound.
    let text = format!("{}{OPENAI}", "a ".repeat(250));
    let clean = sanitize_message(&text);
    assert!(clean.len() <= MAX_MESSAGE_LEN);
    assert!(!clean.contains("sk-abc"), "{clean}");
    // A secret straddling the scan window, after text that renders to
    // nothing.
    let secret = "correcthorsebattery";
    let redactor = Redactor::new([secret].into_iter().collect());
    let mut text = "\u{7}".repeat(MAX_SCAN_LEN - 5);
    text.push_str(secret);
    let clean = redactor.redact(&text);
    assert!(!clean.contains("corr"), "{clean}");
}

#[test]
fn secrets_keep_long_ones_once_and_never_show_them() {
    let mut secrets = Secrets::new();
    assert!(secrets.insert("long-enough-secret"));
    assert!(!secrets.insert("long-enough-secret"));
    assert!(!secrets.insert("short"));
    assert_eq!(secrets.len(), 1);
    let debug = format!("{:?}", Redactor::new(secrets));
    assert!(!debug.contains("long-enough"), "{debug}");
}

/// How a secret may be written in a text.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Raw,
    UrlUpper,
    UrlLower,
    Json,
    JsonSlash,
    Unicode,
    UrlOfJson,
}

fn encode(secret: &str, encoding: Encoding) -> String {
    let url = |s: &str, lower: bool| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else if lower {
                    format!("%{b:02x}")
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let json = |s: &str| -> String {
        let quoted = serde_json::to_string(s).unwrap();
        quoted[1..quoted.len() - 1].to_owned()
    };
    match encoding {
        Encoding::Raw => secret.to_owned(),
        Encoding::UrlUpper => url(secret, false),
        Encoding::UrlLower => url(secret, true),
        Encoding::Json => json(secret),
        Encoding::JsonSlash => json(secret).replace('/', "\\/"),
        Encoding::Unicode => secret
            .encode_utf16()
            .map(|unit| format!("\\u{unit:04x}"))
            .collect(),
        Encoding::UrlOfJson => url(&json(secret), false),
    }
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Raw),
        Just(Encoding::UrlUpper),
        Just(Encoding::UrlLower),
        Just(Encoding::Json),
        Just(Encoding::JsonSlash),
        Just(Encoding::Unicode),
        Just(Encoding::UrlOfJson),
    ]
}

/// Text around a secret: anything, with a bias towards the characters that
/// start escapes and separate words.
fn around() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z0-9 %\\\\\"'=:/_.-]{0,40}",]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_configured_secret_never_survives(
        secret in "[a-zA-Z0-9!#$%&*+,./:;<=>?@\\\\\"' _~-]{6,40}",
        encoding in encoding(),
        before in around(),
        after in around(),
        others in proptest::collection::vec("[a-z]{6,12}", 0..3),
    ) {
        let mut secrets: Secrets = others.iter().collect();
        secrets.insert(&secret);
        let redactor = Redactor::new(secrets);
        let form = encode(&secret, encoding);
        let text = format!("{before}{form}{after}");
        let clean = redactor.redact(&text);
        prop_assert!(!clean.contains(&secret), "{:?} in {:?}", secret, clean);
        prop_assert!(!clean.contains(&form), "{:?} in {:?}", form, clean);
        prop_assert!(clean.len() <= MAX_MESSAGE_LEN);
    }

    #[test]
    fn a_key_shaped_token_never_survives(
        prefix in prop_oneof![
            Just("sk-"), Just("sk-proj-"), Just("sk-or-v1-"), Just("sk-ant-api03-"),
            Just("AKIA"), Just("ASIA"), Just("AIza"), Just("ghp_"),
        ],
        random in "[a-zA-Z0-9_-]{20,60}",
        digit in 0u8..10,
        before in around(),
        after in around(),
    ) {
        // Issued keys are random: the odd one without a digit is not a
        // shape any rule can tell from a word.
        let key = format!("{prefix}{random}{digit}");
        let text = format!("{before}{key}{after}");
        let clean = sanitize_message(&text);
        prop_assert!(!clean.contains(&key), "{:?} in {:?}", key, clean);
        prop_assert!(!clean.contains(&random), "{:?} in {:?}", random, clean);
    }

    #[test]
    fn redaction_is_total_and_bounded(text in any::<String>(), presented in "[ -~]{0,30}") {
        let mut redactor = Redactor::new(["correcthorsebattery"].into_iter().collect());
        if let Ok(value) = HeaderValue::from_str(&presented) {
            redactor = redactor.with_presented(value);
        }
        let clean = redactor.redact(&text);
        prop_assert!(clean.len() <= MAX_MESSAGE_LEN);
        prop_assert!(!clean.chars().any(is_hidden));
    }
}
