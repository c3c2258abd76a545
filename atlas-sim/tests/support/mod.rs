//! Test support: a small HTTP Digest client (MD5 and SHA-256), a service-account client, and an
//! OpenAPI-3.0-aware validator over the official specification (discriminators, nullable, writeOnly).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use md5::{Digest as _, Md5};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

pub static VALIDATED_RESPONSES: AtomicUsize = AtomicUsize::new(0);
pub static VALIDATED_REQUESTS: AtomicUsize = AtomicUsize::new(0);
pub static UNDOCUMENTED_ERRORS: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------- OpenAPI

pub struct Spec {
    pub doc: Value,
    regex: Mutex<HashMap<String, regex::Regex>>,
}

/// What the schemas at one place in a document declare (see `Spec::undeclared`).
#[derive(Default)]
struct Shape {
    properties: HashMap<String, Vec<Value>>,
    items: Vec<Value>,
    open: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Request,
    Response,
}

/// The official Atlas Administration API v2 specification, the judge every request and response is
/// checked against. It ships in MongoDB's Go SDK module, pinned by version and checksum in
/// `tests/atlas-sdk/go.sum`; `scripts/atlas-spec.sh` fetches it once into the Go module cache (outside
/// the clone) and prints its path. `ATLAS_OPENAPI_SPEC` names a copy directly.
pub fn spec_path() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("ATLAS_OPENAPI_SPEC") {
        return p.into();
    }
    let script = std::path::Path::new(&manifest_dir()).join("../scripts/atlas-spec.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a UTF-8 path").trim().into()
}

pub fn spec() -> Arc<Spec> {
    static SPEC: OnceLock<Arc<Spec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut doc: Value = serde_yaml::from_str(&text).expect("spec parses");
        // Deviation 1 (atlas-sim/README.md): the specification declares ApiError.parameters items as
        // objects; Atlas sends strings and numbers there.
        doc["components"]["schemas"]["ApiError"]["properties"]["parameters"]["items"] = json!({});
        Arc::new(Spec {
            doc,
            regex: Mutex::new(HashMap::new()),
        })
    })
    .clone()
}

impl Spec {
    pub fn resolve<'a>(&'a self, r: &str) -> &'a Value {
        let ptr = r.strip_prefix('#').expect("local ref");
        self.doc
            .pointer(ptr)
            .unwrap_or_else(|| panic!("unresolved $ref {r}"))
    }

    /// Finds the spec path template matching a concrete path (static segments win over parameters).
    pub fn template_for(&self, path: &str) -> Option<String> {
        let segs: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for t in self.doc["paths"].as_object()?.keys() {
            let ts: Vec<&str> = t.split('/').collect();
            if ts.len() != segs.len() {
                continue;
            }
            let mut statics = 0;
            let ok = ts.iter().zip(&segs).all(|(a, b)| {
                if a.starts_with('{') {
                    true
                } else if a == b {
                    statics += 1;
                    true
                } else {
                    false
                }
            });
            if ok && best.as_ref().is_none_or(|(s, _)| statics > *s) {
                best = Some((statics, t.clone()));
            }
        }
        best.map(|(_, t)| t)
    }

    pub fn operation(&self, template: &str, method: &Method) -> &Value {
        let op = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(op.is_object(), "no operation {method} {template} in the spec");
        op
    }

    /// The versioned media type of an operation's success response.
    pub fn success_media(&self, template: &str, method: &Method) -> String {
        let op = self.operation(template, method);
        for code in ["200", "202", "204"] {
            if let Some(c) = op["responses"][code]["content"].as_object()
                && let Some(k) = c.keys().next()
            {
                return k.clone();
            }
        }
        panic!("no success media type for {method} {template}")
    }

    pub fn request_schema(&self, template: &str, method: &Method) -> Option<(String, Value)> {
        let op = self.operation(template, method);
        let c = op["requestBody"]["content"].as_object()?;
        let (k, v) = c.iter().next()?;
        Some((k.clone(), v["schema"].clone()))
    }

    /// Checks status, media type and body of a response against the operation.
    pub fn check_response(
        &self,
        template: &str,
        method: &Method,
        status: u16,
        content_type: &str,
        body: &Value,
    ) -> Vec<String> {
        let op = self.operation(template, method);
        let mut resp = &op["responses"][status.to_string()];
        if resp.is_null() {
            if status < 400 {
                return vec![format!(
                    "status {status} is not documented for {method} {template}"
                )];
            }
            // Errors the spec doesn't list for this operation (406/410 versioning, 415, 503, …) still have
            // to be Atlas error envelopes.
            UNDOCUMENTED_ERRORS.fetch_add(1, Ordering::Relaxed);
            let mut errs = vec![];
            if !content_type.starts_with("application/json") {
                errs.push(format!("error content type {content_type}"));
            }
            let schema = json!({"$ref": "#/components/schemas/ApiError"});
            self.validate(body, &schema, "$", Mode::Response, &mut vec![], &mut errs);
            VALIDATED_RESPONSES.fetch_add(1, Ordering::Relaxed);
            return errs;
        }
        if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
            resp = self.resolve(r);
        }
        let Some(content) = resp["content"].as_object() else {
            return vec![];
        };
        let mt = content_type.split(';').next().unwrap_or("").trim();
        let Some(media) = content.get(mt) else {
            return vec![format!(
                "{method} {template} {status}: content type {mt} not in {:?}",
                content.keys().collect::<Vec<_>>()
            )];
        };
        if status == 204 {
            return vec![];
        }
        let mut errs = vec![];
        if let Some(schema) = media.get("schema") {
            self.validate(body, schema, "$", Mode::Response, &mut vec![], &mut errs);
            self.undeclared(body, std::slice::from_ref(schema), "$", &mut errs);
        }
        VALIDATED_RESPONSES.fetch_add(1, Ordering::Relaxed);
        errs
    }

    /// Flags the fields of a body that no schema declares: a field the simulator invented is a field a
    /// client could come to rely on, and one a test sends is one Atlas would ignore or refuse. Objects whose schemas declare no properties, or allow
    /// additional ones, are free-form. `schemas` are all the schemas that apply at `at` (a property can
    /// be declared by a base and by its variant).
    pub fn undeclared(&self, v: &Value, schemas: &[Value], at: &str, errs: &mut Vec<String>) {
        let mut shape = Shape::default();
        for s in schemas {
            self.collect_shape(v, s, &mut vec![], &mut shape);
        }
        match v {
            Value::Object(m) => {
                let free_form = shape.open || shape.properties.is_empty();
                for (k, x) in m {
                    match shape.properties.get(k) {
                        Some(child) => self.undeclared(x, child, &format!("{at}.{k}"), errs),
                        None if !free_form => errs.push(format!("{at}: undeclared property {k}")),
                        None => {}
                    }
                }
            }
            Value::Array(xs) if !shape.items.is_empty() => {
                for (i, x) in xs.iter().enumerate() {
                    self.undeclared(x, &shape.items, &format!("{at}[{i}]"), errs);
                }
            }
            _ => {}
        }
    }

    /// Gathers what `schema` declares for `v`: through `$ref`, `allOf`, every `oneOf`/`anyOf` branch,
    /// and a discriminated base's own part plus the variant its tag names.
    fn collect_shape(&self, v: &Value, schema: &Value, refs: &mut Vec<String>, shape: &mut Shape) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if refs.iter().any(|x| x == r) {
                return;
            }
            refs.push(r.to_string());
            let target = self.resolve(r);
            if let Some(d) = target.get("discriminator") {
                let prop = d["propertyName"].as_str().unwrap_or("");
                let mut own = target.clone();
                if let Some(o) = own.as_object_mut() {
                    o.remove("oneOf");
                    o.remove("discriminator");
                }
                self.collect_shape(v, &own, refs, shape);
                if let Some(variant) = v
                    .get(prop)
                    .and_then(Value::as_str)
                    .and_then(|tag| d["mapping"][tag].as_str())
                {
                    self.collect_shape(v, &json!({ "$ref": variant }), refs, shape);
                }
            } else {
                self.collect_shape(v, target, refs, shape);
            }
            refs.pop();
            return;
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for part in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.collect_shape(v, part, refs, shape);
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, s) in props {
                shape.properties.entry(k.clone()).or_default().push(s.clone());
            }
        }
        if schema
            .get("additionalProperties")
            .is_some_and(|ap| ap != &json!(false))
        {
            shape.open = true;
        }
        if let Some(items) = schema.get("items") {
            shape.items.push(items.clone());
        }
    }

    pub fn check_request(&self, template: &str, method: &Method, body: &Value) -> Vec<String> {
        let Some((_, schema)) = self.request_schema(template, method) else {
            return vec![];
        };
        let mut errs = vec![];
        self.validate(body, &schema, "$", Mode::Request, &mut vec![], &mut errs);
        self.undeclared(body, std::slice::from_ref(&schema), "$", &mut errs);
        VALIDATED_REQUESTS.fetch_add(1, Ordering::Relaxed);
        errs
    }

    fn string_branches_only(&self, one_of: &[Value]) -> bool {
        one_of.iter().all(|b| {
            let b = b
                .get("$ref")
                .and_then(Value::as_str)
                .map(|r| self.resolve(r))
                .unwrap_or(b);
            b.get("type").and_then(Value::as_str) == Some("string")
        })
    }

    /// `skip` holds the $refs of discriminator bases being validated, so variants that allOf their own base
    /// don't recurse forever.
    pub fn validate(
        &self,
        v: &Value,
        schema: &Value,
        at: &str,
        mode: Mode,
        skip: &mut Vec<String>,
        errs: &mut Vec<String>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if skip.iter().any(|s| s == r) {
                return;
            }
            let target = self.resolve(r);
            if target.get("discriminator").is_some() {
                return self.validate_discriminated(v, target, r, at, mode, skip, errs);
            }
            return self.validate(v, target, at, mode, skip, errs);
        }
        // OpenAPI 3.0 `nullable`; without it, null falls through to the type check.
        if v.is_null() && schema.get("nullable") == Some(&json!(true)) {
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(v, s, at, mode, skip, errs);
            }
        }
        let one_of = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array);
        let enum_quirk = one_of.is_some_and(|o| self.string_branches_only(o));
        if let Some(branches) = one_of {
            // Overlapping oneOfs without a discriminator (the AWS, Azure and GCP hardware specs all match an
            // M10) are treated as anyOf.
            let mut best: Option<Vec<String>> = None;
            for b in branches {
                let mut e = vec![];
                self.validate(v, b, at, mode, skip, &mut e);
                if e.is_empty() {
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|x| e.len() < x.len()) {
                    best = Some(e);
                }
            }
            if let Some(e) = best {
                errs.push(format!(
                    "{at}: matches no oneOf/anyOf branch; closest: {}",
                    e.join("; ")
                ));
            }
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            // `type: object` beside a oneOf of string enums means a string (`regionName`).
            let t = if enum_quirk && t == "object" { "string" } else { t };
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                if v.is_null() && schema.get("nullable") == Some(&json!(true)) {
                    return;
                }
                errs.push(format!("{at}: expected {t}, got {v}"));
                return;
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !(v.is_null() && schema.get("nullable") == Some(&json!(true)))
            && !e.contains(v)
        {
            errs.push(format!("{at}: {v} not in enum"));
        }
        match v {
            Value::String(s) => self.check_string(s, schema, at, errs),
            Value::Number(n) => {
                if let (Some(min), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
                    && x < min
                {
                    errs.push(format!("{at}: {x} < minimum {min}"));
                }
                if let (Some(max), Some(x)) = (schema.get("maximum").and_then(Value::as_f64), n.as_f64())
                    && x > max
                {
                    errs.push(format!("{at}: {x} > maximum {max}"));
                }
            }
            Value::Array(items) => {
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    errs.push(format!("{at}: more than {max} items"));
                }
                if let Some(is) = schema.get("items") {
                    for (i, x) in items.iter().enumerate() {
                        self.validate(x, is, &format!("{at}[{i}]"), mode, skip, errs);
                    }
                }
            }
            Value::Object(m) => {
                let props = schema.get("properties").and_then(Value::as_object);
                if let Some(req) = schema.get("required").and_then(Value::as_array) {
                    for r in req.iter().filter_map(Value::as_str) {
                        let p = props.and_then(|p| p.get(r));
                        let p = p.map(|p| {
                            p.get("$ref")
                                .and_then(Value::as_str)
                                .map(|x| self.resolve(x))
                                .unwrap_or(p)
                        });
                        let exempt = match mode {
                            Mode::Response => p.is_some_and(|p| p.get("writeOnly") == Some(&json!(true))),
                            Mode::Request => p.is_some_and(|p| p.get("readOnly") == Some(&json!(true))),
                        };
                        if !m.contains_key(r) && !exempt {
                            errs.push(format!("{at}: missing required {r}"));
                        }
                    }
                }
                if let Some(props) = props {
                    for (k, x) in m {
                        if let Some(ps) = props.get(k) {
                            let flag = match mode {
                                Mode::Response => "writeOnly",
                                Mode::Request => "readOnly",
                            };
                            if ps.get(flag) == Some(&json!(true)) {
                                errs.push(format!("{at}.{k}: {flag} property present in a {mode:?}"));
                            }
                            self.validate(x, ps, &format!("{at}.{k}"), mode, skip, errs);
                        }
                    }
                }
                if let Some(ap) = schema.get("additionalProperties") {
                    if ap == &json!(false) {
                        if let Some(props) = props {
                            for k in m.keys().filter(|k| !props.contains_key(*k)) {
                                errs.push(format!("{at}: unexpected property {k}"));
                            }
                        }
                    } else if ap.is_object() {
                        for (k, x) in m {
                            if props.is_none_or(|p| !p.contains_key(k)) {
                                self.validate(x, ap, &format!("{at}.{k}"), mode, skip, errs);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_discriminated(
        &self,
        v: &Value,
        base: &Value,
        base_ref: &str,
        at: &str,
        mode: Mode,
        skip: &mut Vec<String>,
        errs: &mut Vec<String>,
    ) {
        let d = &base["discriminator"];
        let prop = d["propertyName"].as_str().unwrap_or("");
        let mut own = base.clone();
        if let Some(o) = own.as_object_mut() {
            o.remove("oneOf");
            o.remove("discriminator");
        }
        skip.push(base_ref.to_string());
        self.validate(v, &own, at, mode, skip, errs);
        match v.get(prop).and_then(Value::as_str) {
            Some(tag) => match d["mapping"].get(tag).and_then(Value::as_str) {
                Some(r) => self.validate(v, self.resolve(r), at, mode, skip, errs),
                None => errs.push(format!("{at}: discriminator {prop}={tag} has no mapping")),
            },
            None if v.is_object() && mode == Mode::Response => {
                errs.push(format!("{at}: discriminator {prop} missing"))
            }
            None => {}
        }
        skip.pop();
    }

    fn check_string(&self, s: &str, schema: &Value, at: &str, errs: &mut Vec<String>) {
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && (s.chars().count() as u64) < min
        {
            errs.push(format!("{at}: shorter than {min}"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && s.chars().count() as u64 > max
        {
            errs.push(format!("{at}: longer than {max}"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            let mut cache = self.regex.lock().unwrap();
            let re = cache
                .entry(p.to_string())
                .or_insert_with(|| regex::Regex::new(p).expect("spec regex compiles"));
            if !re.is_match(s) {
                errs.push(format!("{at}: {s:?} does not match {p}"));
            }
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date-time") if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                errs.push(format!("{at}: {s:?} is not a date-time"))
            }
            Some("uuid") if uuid::Uuid::parse_str(s).is_err() => {
                errs.push(format!("{at}: {s:?} is not a uuid"))
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- clients

#[derive(Clone, Copy, Debug)]
pub enum Alg {
    Md5,
    Sha256,
}

pub enum Auth {
    None,
    Digest {
        user: String,
        pass: String,
        alg: Alg,
        nonce: Mutex<Option<(String, u32)>>,
    },
    Bearer(String),
}

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub auth: Auth,
    pub spec: Arc<Spec>,
    /// Validate every request and response against the spec (off for deliberately broken requests).
    pub validate: bool,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["errorCode"].as_str().unwrap_or("")
    }
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.body
        );
    }
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {} {}",
            self.status,
            self.body
        );
        &self.body
    }
}

fn h(alg: Alg, s: &str) -> String {
    match alg {
        Alg::Md5 => hex::encode(Md5::digest(s.as_bytes())),
        Alg::Sha256 => hex::encode(Sha256::digest(s.as_bytes())),
    }
}

pub fn parse_challenge(h: &str) -> HashMap<String, String> {
    let rest = h.trim_start_matches("Digest ");
    let mut out = HashMap::new();
    for part in rest.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(k.trim().to_string(), v.trim_matches('"').to_string());
        }
    }
    out
}

pub fn digest_header(
    user: &str,
    pass: &str,
    alg: Alg,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
) -> String {
    let realm = "MMS Public API";
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let ha1 = h(alg, &format!("{user}:{realm}:{pass}"));
    let ha2 = h(alg, &format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let alg_name = match alg {
        Alg::Md5 => "MD5",
        Alg::Sha256 => "SHA-256",
    };
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm={alg_name}, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\""
    )
}

impl Client {
    pub fn new(base: &str, auth: Auth) -> Client {
        Client {
            base: base.to_string(),
            http: reqwest::Client::new(),
            auth,
            spec: spec(),
            validate: true,
        }
    }

    pub fn digest(base: &str, user: &str, pass: &str, alg: Alg) -> Client {
        Self::new(
            base,
            Auth::Digest {
                user: user.into(),
                pass: pass.into(),
                alg,
                nonce: Mutex::new(None),
            },
        )
    }

    pub async fn service_account(base: &str, id: &str, secret: &str) -> Client {
        let token = token(base, id, secret).await;
        Self::new(base, Auth::Bearer(token))
    }

    /// Sends with the newest documented version of the operation and validates both directions.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let template = self
            .spec
            .template_for(&format!("/api/atlas/v2{}", path.split('?').next().unwrap()))
            .unwrap_or_else(|| panic!("no template for {path}"));
        let media = self.spec.success_media(&template, &method);
        self.call_with(method, path, body, &media, &media).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        accept: &str,
        content_type: &str,
    ) -> Resp {
        let template = self
            .spec
            .template_for(&format!("/api/atlas/v2{}", path.split('?').next().unwrap()));
        if self.validate
            && let (Some(t), Some(b)) = (&template, &body)
        {
            let errs = self.spec.check_request(t, &method, b);
            assert!(
                errs.is_empty(),
                "request body for {method} {path} violates the spec: {errs:#?}"
            );
        }
        let uri = format!("/api/atlas/v2{path}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut rb = self
                .http
                .request(method.clone(), format!("{}{uri}", self.base))
                .header("Accept", accept);
            if let Some(b) = &body {
                rb = rb.header("Content-Type", content_type).body(b.to_string());
            }
            match &self.auth {
                Auth::None => {}
                Auth::Bearer(t) => rb = rb.bearer_auth(t),
                Auth::Digest {
                    user,
                    pass,
                    alg,
                    nonce,
                } => {
                    let cur = {
                        let mut n = nonce.lock().unwrap();
                        n.as_mut().map(|(s, nc)| {
                            *nc += 1;
                            (s.clone(), *nc)
                        })
                    };
                    if let Some((s, nc)) = cur {
                        rb = rb.header(
                            "Authorization",
                            digest_header(user, pass, *alg, method.as_str(), &uri, &s, nc),
                        );
                    }
                }
            }
            let r = rb.send().await.expect("request sent");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap_or_default();
            if let (Auth::Digest { nonce, .. }, 401) = (&self.auth, status)
                && attempt < 3
                && let Some(ch) = headers.get("www-authenticate").and_then(|v| v.to_str().ok())
            {
                let c = parse_challenge(ch);
                let had = nonce.lock().unwrap().is_some();
                if !had || c.get("stale").map(String::as_str) == Some("true") {
                    *nonce.lock().unwrap() = Some((c["nonce"].clone(), 0));
                    continue;
                }
            }
            let body_v: Value = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            if self.validate
                && let Some(t) = &template
            {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let errs = self.spec.check_response(t, &method, status, ct, &body_v);
                assert!(
                    errs.is_empty(),
                    "response to {method} {path} ({status}) violates the spec: {errs:#?}\nbody: {body_v}"
                );
            }
            return Resp {
                status,
                headers,
                body: body_v,
            };
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }
}

pub async fn token(base: &str, id: &str, secret: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/oauth/token"))
        .basic_auth(id, Some(secret))
        .header("Accept", "application/json")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    v["access_token"].as_str().unwrap().to_string()
}

/// Control API helper.
pub async fn control(base: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().request(method, format!("{base}/__sim{path}"));
    if let Some(b) = body {
        rb = rb.header("Content-Type", "application/json").body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap_or_default();
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

pub const GID: &str = "6512a0f0c0ffee0000000001";
pub const GID_B: &str = "6512a0f0c0ffee0000000002";

pub const SEED: &str = r#"
apiKeys:
  - {publicKey: pub1, privateKey: priv1, projects: [proj-a]}
  - {publicKey: admin, privateKey: adminpriv, projects: ["*"]}
serviceAccounts:
  - {clientId: mdb_sa_id_000000000000000000000001, clientSecret: secret1, projects: [proj-a]}
projects:
  - name: proj-a
    id: 6512a0f0c0ffee0000000001
    clusters:
      - {name: Cluster0, instanceSize: M10, providerName: AWS, regionName: EU_WEST_2, backupEnabled: true}
      - {name: Free0, instanceSize: M0, providerName: AWS, regionName: US_EAST_1}
      - {name: Legacy0, instanceSize: M30, providerName: AWS, regionName: US_EAST_1, legacyBackup: true}
      - {name: Flex0, instanceSize: FLEX, providerName: AWS, regionName: US_EAST_1}
      - {name: Sls0, kind: serverless, providerName: AWS, regionName: US_EAST_1}
  - name: proj-b
    id: 6512a0f0c0ffee0000000002
"#;

pub async fn start(aws_endpoint: Option<String>) -> atlas_sim::SimHandle {
    atlas_sim::spawn(atlas_sim::SimConfig {
        seed: Some(atlas_sim::Seed::from_yaml_str(SEED).unwrap()),
        cluster_update_delay: std::time::Duration::from_millis(300),
        aws_endpoint,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The moto endpoint, or None (loudly) when unset; panics instead when ATLAS_SIM_REQUIRE_MOTO=1.
pub fn moto() -> Option<String> {
    match std::env::var("MOTO_ENDPOINT").ok().filter(|s| !s.is_empty()) {
        Some(e) => Some(e),
        None if std::env::var("ATLAS_SIM_REQUIRE_MOTO").as_deref() == Ok("1") => {
            panic!(
                "ATLAS_SIM_REQUIRE_MOTO=1 but MOTO_ENDPOINT is not set: start moto (scripts/testenv.sh up)"
            )
        }
        None => {
            // Written to the real stderr: libtest captures eprintln! of passing tests, and this must be seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED: MOTO_ENDPOINT is not set, so the AWS-backed checks did not run !!!!!!!!\n"
            );
            None
        }
    }
}

/// Read at run time: checkouts sharing one cached target dir reuse each other's test binaries, so a
/// compile-time `env!` path can point into another checkout.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run with cargo test")
}
