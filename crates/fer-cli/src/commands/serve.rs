//! `fer serve`: a local web page where a person drops a photo or turns on the webcam and sees
//! each face boxed with its emotion, probability bars and a saliency overlay; plus the JSON
//! endpoint behind it (`POST /api/predict`, the image bytes as the body) for scripts.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use clap::Args;
use fer_detect::{DetectError, PhotoLimits};
use fer_model::FerModel;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::commands::predict::DetectArgs;
use crate::photos::{Classifier, saliency_overlays};

/// The page: static HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere.
const INDEX_HTML: &str = include_str!("../../assets/index.html");

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. The default keeps the page on this machine; 0.0.0.0 shares it with
    /// the network (photos are not stored either way).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8048)]
    port: u16,
    #[command(flatten)]
    detect: DetectArgs,
}

struct AppState {
    classifier: Mutex<Classifier>,
    /// The first model on the autodiff device, for saliency.
    explainer: Mutex<(FerModel, burn::tensor::Device)>,
    limits: PhotoLimits,
    run: String,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let source = args.detect.source()?;
    let classifier = args.detect.classifier()?;
    let explainer = crate::photos::explain_model(&source, &classifier.device)?;
    let state = Arc::new(AppState {
        classifier: Mutex::new(classifier),
        explainer: Mutex::new(explainer),
        limits: args.detect.limits(),
        run: source.describe(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.bind, args.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
        let addr = listener.local_addr()?;
        println!("fer serve: {} on http://{addr}/ (Ctrl-C stops)", source.describe());
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(())
    })
}

fn router(state: Arc<AppState>) -> Router {
    // The body limit is the file limit plus room for nothing else: the body *is* the image.
    let body_limit = state.limits.max_bytes;
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/api/health", get(health))
        .route("/api/predict", post(predict).layer(DefaultBodyLimit::max(body_limit)))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let classes: Vec<&str> = fer_data::Emotion::ALL.iter().map(|e| e.name()).collect();
    json_response(
        StatusCode::OK,
        json!({"status": "ok", "run": state.run, "classes": classes, "max_bytes": state.limits.max_bytes, "max_pixels": state.limits.max_pixels}),
    )
}

#[derive(Deserialize)]
struct PredictQuery {
    /// Add a saliency overlay (a PNG data URL) to each face.
    #[serde(default)]
    explain: bool,
    /// `false` classifies the whole image as one face crop.
    #[serde(default = "yes")]
    detect: bool,
}

fn yes() -> bool {
    true
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    json_response(status, json!({ "error": message }))
}

async fn predict(
    State(state): State<Arc<AppState>>,
    Query(query): Query<PredictQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = headers.get("x-filename").and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).unwrap_or("upload").to_string();
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("{name}: over the limit of {} bytes per image", state.limits.max_bytes));
        }
        Err(rejection) => return error(rejection.status(), format!("{name}: {}", rejection.body_text())),
    };
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, format!("{name}: empty body; send the image's bytes (PNG or JPEG)"));
    }
    let work = tokio::task::spawn_blocking(move || answer(&state, &body, &name, query));
    match work.await {
        Ok(response) => response,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the prediction failed: {e}")),
    }
}

/// Header check, decode, detect, classify (and explain): the blocking part of a request.
fn answer(state: &AppState, bytes: &[u8], name: &str, query: PredictQuery) -> Response {
    // The pixel limit is checked from the header alone, before any pixel memory is reserved.
    let photo = fer_detect::photo_dimensions(bytes, name).and_then(|_| fer_detect::decode_photo(bytes, name, &state.limits));
    let photo = match photo {
        Ok(photo) => photo,
        Err(e @ (DetectError::TooManyPixels { .. } | DetectError::TooManyBytes { .. })) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let result = {
        let classifier = state.classifier.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        classifier.classify(&photo, name, query.detect)
    };
    let mut body = result.to_json();
    if query.explain {
        let overlays = {
            let explainer = state.explainer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            saliency_overlays(&explainer.0, &explainer.1, &result)
        };
        if let Some(faces) = body.get_mut("faces").and_then(Value::as_array_mut) {
            for (face, png) in faces.iter_mut().zip(overlays) {
                let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
                face["saliency"] = Value::String(url);
            }
        }
    }
    json_response(StatusCode::OK, body)
}
