//! A Google service account, and the signed JWT that trades it for an
//! access token.
//!
//! From Google's "Using OAuth 2.0 for Server to Server Applications"
//! (<https://developers.google.com/identity/protocols/oauth2/service-account>):
//! the key file holds `client_email`, `private_key` (a PKCS#8 PEM),
//! `private_key_id` and `token_uri`; the assertion is a JWT signed with
//! RS256 whose claims are `iss` (the client email), `scope`, `aud` (the
//! token URI), `iat` and `exp` (at most an hour later), posted with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use serde_json::json;

use crate::error::InvalidConfig;

/// Google's token endpoint, used when the key file names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope Vertex AI's API takes.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long an assertion is valid: Google's maximum, an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// A service account's key, parsed once: who it is, where its tokens come
/// from, and the key that signs its assertions. `Debug` shows the email
/// only.
pub struct ServiceAccount {
    /// SHA-256 of the email, token URI and key: which accounts are the same.
    identity: [u8; 32],
    client_email: String,
    private_key_id: Option<String>,
    project_id: Option<String>,
    token_uri: String,
    key: RsaKeyPair,
    rng: SystemRandom,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Reads LiteLLM's `vertex_credentials`: the key file's JSON text, or
    /// the path of the file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or is not a service-account key
    /// (messages never show its content).
    pub fn load(credentials: &str) -> Result<Self, InvalidConfig> {
        let trimmed = credentials.trim_start();
        if trimmed.starts_with('{') {
            return Self::from_json(trimmed);
        }
        let text = std::fs::read_to_string(credentials)
            .map_err(|_| InvalidConfig::Invalid("vertex_credentials (the file)".into()))?;
        Self::from_json(&text)
    }

    /// Parses a service-account key file's JSON.
    ///
    /// # Errors
    ///
    /// When it is not JSON, not a `service_account` key, or its
    /// `private_key` is not an RSA PKCS#8 PEM.
    pub fn from_json(json: &str) -> Result<Self, InvalidConfig> {
        let invalid = |what: &str| InvalidConfig::Invalid(format!("vertex_credentials ({what})"));
        let file: KeyFile = serde_json::from_str(json).map_err(|_| invalid("not JSON"))?;
        if file.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err(invalid("only service_account keys are supported"));
        }
        let client_email = file
            .client_email
            .ok_or_else(|| invalid("no client_email"))?;
        let pem = file.private_key.ok_or_else(|| invalid("no private_key"))?;
        let key = RsaKeyPair::from_pkcs8(&pem_der(&pem).ok_or_else(|| invalid("private_key"))?)
            .map_err(|_| invalid("private_key"))?;
        let token_uri = file
            .token_uri
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let mut identity = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [
            client_email.as_bytes(),
            token_uri.as_bytes(),
            pem.as_bytes(),
        ] {
            identity.update(&(part.len() as u64).to_be_bytes());
            identity.update(part);
        }
        let mut digest = [0; 32];
        digest.copy_from_slice(identity.finish().as_ref());
        Ok(ServiceAccount {
            identity: digest,
            client_email,
            private_key_id: file.private_key_id,
            project_id: file.project_id,
            token_uri,
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The account's project (`project_id`), LiteLLM's default
    /// `vertex_project`.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// What tells this account's key from any other (a digest, never the
    /// key).
    pub(crate) fn identity(&self) -> [u8; 32] {
        self.identity
    }

    /// Where tokens are asked for (`token_uri`).
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The signed assertion for a token request made at `now`.
    pub(crate) fn assertion(&self, now: SystemTime) -> Option<String> {
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, jwt.as_bytes(), &mut signature)
            .ok()?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Some(jwt)
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The DER inside a PEM block (any label), `None` when it is not one.
pub(crate) fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body = pem.trim().strip_prefix("-----BEGIN ")?;
    let (_, body) = body.split_once("-----")?;
    let (body, _) = body.split_once("-----END ")?;
    let base64: String = body.split_whitespace().collect();
    STANDARD.decode(base64).ok()
}
