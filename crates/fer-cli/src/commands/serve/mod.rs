//! `fer serve`: a local web page where a person drops a photo or turns on the webcam and sees
//! each face boxed with its emotion, probability bars and a saliency overlay; plus the JSON
//! endpoint behind it (`POST /api/predict`, the image bytes as the body) for scripts.
//!
//! Under load (docs/RELIABILITY.md, "Serving"): a bounded inference queue that answers 503 with
//! `Retry-After` when full (`--max-queue`), dynamic batching of faces from concurrent requests
//! (`batcher`), deadlines on slow clients and a cap on connections, graceful shutdown on SIGTERM
//! or Ctrl-C (`http`), one log line per request and `GET /metrics` (`metrics`).

mod batcher;
mod http;
mod metrics;
mod workers;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use burn::module::Module;
use clap::{Args, ValueEnum};
use fer_detect::{DetectError, FaceDetector, PhotoLimits};
use fer_model::FerModel;
use serde::Deserialize;
use serde_json::{Value, json};

use self::batcher::{BatchPolicy, Batcher};
use self::http::ConnectionLimits;
use self::metrics::Metrics;
use self::workers::Workers;
use crate::commands::predict::DetectArgs;
use crate::photos::{FoundFaces, find_faces, saliency_overlays};

/// The page: static HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere.
const INDEX_HTML: &str = include_str!("../../../assets/index.html");

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
    /// Requests admitted for inference and not yet answered, past which new ones are refused at
    /// once with 503 and Retry-After (instead of every client waiting longer).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    max_queue: u32,
    /// Milliseconds the first request of a batch waits for others, so faces from concurrent
    /// requests go through the model together; 0 classifies each request alone.
    #[arg(long, default_value_t = 5)]
    batch_wait: u64,
    /// Most faces in one model call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_batch: u32,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a client has to send a request's headers (and an idle connection stays open).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
    /// One line per request on stderr (method, path, status, bytes, faces, milliseconds): text,
    /// json (one object per line) or off.
    #[arg(long, value_enum, default_value = "text")]
    log: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
    Off,
}

/// The model as `GET /api/health` names it.
struct ModelInfo {
    source: String,
    architecture: &'static str,
    parameters: usize,
    members: usize,
}

struct AppState {
    workers: Workers,
    detector: FaceDetector,
    margin: f32,
    batcher: Batcher,
    /// The first model on the autodiff device, for saliency.
    explainer: Mutex<(FerModel, burn::tensor::Device)>,
    limits: PhotoLimits,
    body_timeout: Duration,
    model: ModelInfo,
    metrics: Arc<Metrics>,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log);
    let source = args.detect.source()?;
    let classifier = args.detect.classifier()?;
    let explainer = crate::photos::explain_model(&source, &classifier.device)?;
    let first = &classifier.models[0];
    let model = ModelInfo {
        source: source.describe(),
        architecture: first.config().kind(),
        parameters: first.num_params(),
        members: classifier.models.len(),
    };
    let metrics = Arc::new(Metrics::new(args.max_queue as usize));
    let (detector, margin) = (classifier.detector.clone(), classifier.margin);
    let policy = BatchPolicy { wait: Duration::from_millis(args.batch_wait), max_faces: args.max_batch as usize };
    let batcher = Batcher::start(classifier, policy, metrics.clone())?;
    // Decoding and the face search, the per-photo work that needs no model, run on one worker
    // per core at normal priority; the async threads are niced below them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let state = Arc::new(AppState {
        workers: Workers::start(cores)?,
        detector,
        margin,
        batcher,
        explainer: Mutex::new(explainer),
        limits: args.detect.limits(),
        body_timeout: Duration::from_secs(args.body_timeout),
        model,
        metrics: metrics.clone(),
    });
    let limits = ConnectionLimits {
        max_connections: args.max_connections as usize,
        header_timeout: Duration::from_secs(args.header_timeout),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(workers::lower_priority)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.bind, args.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
        let addr = listener.local_addr()?;
        println!("fer serve: {} on http://{addr}/ (Ctrl-C stops)", state.model.source);
        let stop = async {
            let signal = http::stop_signal().await;
            tracing::info!(signal, "stopping: no new connections; in-flight requests finish");
        };
        anyhow::Ok(http::serve(listener, router(state), limits, metrics, stop).await)
    })?;
    match outcome {
        http::Shutdown::Drained => tracing::info!("stopped: every request answered"),
        http::Shutdown::TimedOut { open } => {
            tracing::warn!(
                open,
                timeout_s = args.shutdown_timeout,
                "stopped at --shutdown-timeout with connections still open"
            )
        }
    }
    runtime.shutdown_background();
    Ok(())
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Off => Ok(()),
    };
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/api/health", get(health))
        .route("/api/predict", post(predict))
        .route("/metrics", get(metrics_text))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Faces classified for a response, for the log line and the metrics.
#[derive(Clone, Copy)]
struct FaceCount(usize);

/// One structured log line per request, and the prediction metrics.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let bytes_in = content_length(request.headers()).unwrap_or(0);
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    let faces = response.extensions().get::<FaceCount>().map_or(0, |f| f.0);
    let bytes_out = http_body::Body::size_hint(response.body()).exact().unwrap_or(0);
    if path == "/api/predict" {
        state.metrics.record_request(status, elapsed, faces);
    }
    let ms = (elapsed.as_secs_f64() * 1e4).round() / 10.0;
    tracing::info!(method = %method, path, status, bytes_in, bytes_out, faces, ms, "request");
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let classes: Vec<&str> = fer_data::Emotion::ALL.iter().map(|e| e.name()).collect();
    let m = &state.model;
    json_response(
        StatusCode::OK,
        json!({
            "status": "ok",
            "model": {
                "source": m.source,
                "architecture": m.architecture,
                "parameters": m.parameters,
                "members": m.members,
            },
            "run": m.source,
            "classes": classes,
            "max_bytes": state.limits.max_bytes,
            "max_pixels": state.limits.max_pixels,
            "max_queue": state.metrics.queue_limit,
        }),
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4"), (header::CACHE_CONTROL, "no-store")], state.metrics.render())
        .into_response()
}

#[derive(Clone, Copy, Deserialize)]
struct PredictQuery {
    /// Add a saliency overlay (a PNG data URL) to each face.
    #[serde(default)]
    explain: bool,
    /// `false` classifies the whole image as one face crop.
    #[serde(default = "yes")]
    detect: bool,
    /// Smallest face to look for, in pixels, for this request instead of `--min-face` (the
    /// page's webcam frames ask for 60: faces at a screen are larger, and the search is faster).
    min_face: Option<u32>,
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
    body: Body,
) -> Response {
    let name = headers
        .get("x-filename")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or("upload")
        .to_string();
    let bytes = match read_body(&state, &headers, body, &name).await {
        Ok(bytes) => bytes,
        Err((status, message)) => return error(status, message),
    };
    // Back-pressure: a full queue is refused now, so accepted requests wait a bounded time.
    let Some(ticket) = batcher::admit(&state.metrics) else {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{name}: busy, {} requests are already waiting (--max-queue); retry in a second",
                state.metrics.queue_limit
            ),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let finder = state.clone();
    let found = state.workers.run(move || find(&finder, &bytes, &name, &query)).await;
    let Found { faces: found, name, decode_ms, detect_ms } = match found {
        Ok(Ok(found)) => found,
        Ok(Err((status, message))) => return error(status, message),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the face search failed: {e}")),
    };
    let timing = Instant::now();
    let probabilities = match state.batcher.classify(found.crops.clone()).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}")),
    };
    let classify_ms = timing.elapsed().as_secs_f64() * 1e3;
    let result = found.into_result(&name, probabilities);
    let faces = result.faces.len();
    let mut body = result.to_json();
    let mut server_timing =
        format!("decode;dur={decode_ms:.1}, detect;dur={detect_ms:.1}, classify;dur={classify_ms:.1}");
    if query.explain && faces > 0 {
        let timing = Instant::now();
        let explainer = state.clone();
        let overlays = state
            .workers
            .run(move || {
                let explainer = explainer.explainer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                saliency_overlays(&explainer.0, &explainer.1, &result)
            })
            .await
            .unwrap_or_default();
        if let Some(faces) = body.get_mut("faces").and_then(Value::as_array_mut) {
            for (face, png) in faces.iter_mut().zip(overlays) {
                let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
                face["saliency"] = Value::String(url);
            }
        }
        server_timing.push_str(&format!(", explain;dur={:.1}", timing.elapsed().as_secs_f64() * 1e3));
    }
    drop(ticket);
    let mut response = json_response(StatusCode::OK, body);
    response.extensions_mut().insert(FaceCount(faces));
    if let Ok(value) = HeaderValue::from_str(&server_timing) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// A refusal: the status and the message that names the upload.
type Refusal = (StatusCode, String);

/// The whole body within `--max-bytes` and `--body-timeout`, or why it is refused.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    name: &str,
) -> Result<axum::body::Bytes, Refusal> {
    let limit = state.limits.max_bytes;
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, format!("{name}: over the limit of {limit} bytes per image"));
    // A declared length over the limit is refused before a byte of the body is read.
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => {
            let message =
                format!("{name}: the body did not arrive within {} s (--body-timeout)", state.body_timeout.as_secs());
            return Err((StatusCode::REQUEST_TIMEOUT, message));
        }
        Ok(Err(e)) if is_length_limit(&e) => return Err(too_large()),
        Ok(Err(e)) => return Err((StatusCode::BAD_REQUEST, format!("{name}: cannot read the body: {e}"))),
        Ok(Ok(bytes)) => bytes,
    };
    if bytes.is_empty() {
        return Err((StatusCode::BAD_REQUEST, format!("{name}: empty body; send the image's bytes (PNG or JPEG)")));
    }
    Ok(bytes)
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A photo's faces, found, with the time each step took.
struct Found {
    faces: FoundFaces,
    name: String,
    decode_ms: f64,
    detect_ms: f64,
}

/// Header check, decode and face search: the blocking part of a request before the model.
fn find(state: &AppState, bytes: &[u8], name: &str, query: &PredictQuery) -> Result<Found, Refusal> {
    let start = Instant::now();
    // The pixel limit is checked from the header alone, before any pixel memory is reserved.
    let photo =
        fer_detect::photo_dimensions(bytes, name).and_then(|_| fer_detect::decode_photo(bytes, name, &state.limits));
    let photo = match photo {
        Ok(photo) => photo,
        Err(e @ (DetectError::TooManyPixels { .. } | DetectError::TooManyBytes { .. })) => {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
        }
        Err(e) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
    };
    let decode_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let faces = match query.min_face {
        Some(min_face) => find_faces(&state.detector.with_min_face(min_face), state.margin, &photo, query.detect),
        None => find_faces(&state.detector, state.margin, &photo, query.detect),
    };
    Ok(Found { faces, name: name.to_string(), decode_ms, detect_ms: start.elapsed().as_secs_f64() * 1e3 })
}
