//! `fer serve` driven as clients drive it: the page and the API, a full queue, batching of
//! concurrent requests, slow clients, graceful shutdown, logs and metrics. Every server listens
//! on 127.0.0.1 and every load is small and bounded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fer, json, photo, s, tiny_run};
use serde_json::Value;

/// A running `fer serve` and its address; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Sends SIGTERM, as a service manager stops a service.
    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) only sends a signal to our own child process; it touches no memory.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {pid}: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit (at most `limit`), returning its exit code and stderr.
    fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut stderr) = self.child.stderr.take() {
                    stderr.read_to_string(&mut err).unwrap();
                }
                return (status.code(), err);
            }
            assert!(start.elapsed() < limit, "fer serve did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `fer serve` on a free port; `capture_stderr` keeps its log for `wait_exit`.
fn start_server(run: &Path, extra: &[&str], capture_stderr: bool) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fer"))
        .args(["serve", "--run", s(run), "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .args(if capture_stderr { &[][..] } else { &["--log", "off"][..] })
        .stderr(if capture_stderr { Stdio::piped() } else { Stdio::inherit() })
        .spawn()
        .expect("start fer serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // "fer serve: RUN on http://127.0.0.1:PORT/ (Ctrl-C stops)"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Server { child, addr }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A server may answer (413) and close before reading a large body: that is not a failure.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    (status, head, body)
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// The value of one sample line of `GET /metrics` (0 when absent).
fn metric(addr: &str, name: &str) -> f64 {
    let (status, _, body) = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn serve_answers_the_page_the_api_and_every_bad_request_then_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let server = start_server(&run, &["--max-bytes", "200000"], false);
    let addr = server.addr.as_str();

    let (status, head, page) = http(addr, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/html"));
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("<canvas id=\"view\"") && page.contains("/api/predict") && !page.contains("https://"),
        "self-contained page"
    );

    // The API answers the same object as `fer predict --json` (given the same name).
    let three = photo("three-faces.jpg");
    let bytes = std::fs::read(&three).unwrap();
    let (status, head, body) =
        http(addr, "POST", "/api/predict", &[("X-Filename", s(&three)), ("Content-Type", "image/jpeg")], &bytes);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let from_api = body_json(&body);
    // Where the time went, for the webcam page and for operators: finding faces, then the model.
    let timing = head.to_ascii_lowercase();
    assert!(
        timing.contains("server-timing: decode;dur=")
            && timing.contains(", detect;dur=")
            && timing.contains(", classify;dur="),
        "{head}"
    );
    let from_cli = json(&fer(&["predict", "--run", s(&run), "--json", s(&three)]));
    assert_eq!(from_api, from_cli);

    // ?explain=true adds a saliency overlay per face, as a PNG data URL.
    let (status, _, body) = http(addr, "POST", "/api/predict?explain=true", &[], &bytes);
    assert_eq!(status, 200);
    let v = body_json(&body);
    assert_eq!(v["path"], "upload");
    for face in v["faces"].as_array().unwrap() {
        let url = face["saliency"].as_str().unwrap();
        assert!(url.starts_with("data:image/png;base64,iVBORw0KGgo"), "{}", &url[..40]);
    }

    // Bad requests: each gets its status and a message naming the upload; none stops the server.
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", "notes.txt")], b"these are not pixels");
    assert_eq!(status, 400);
    assert!(body_json(&body)["error"].as_str().unwrap().starts_with("notes.txt: not an image fer can read"));
    let (status, _, body) = http(addr, "POST", "/api/predict", &[], b"");
    assert_eq!(status, 400);
    assert!(body_json(&body)["error"].as_str().unwrap().contains("empty body"));
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", "big.jpg")], &vec![0u8; 300_000]);
    assert_eq!(status, 413);
    assert!(
        body_json(&body)["error"].as_str().unwrap().contains("over the limit of 200000 bytes"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", "huge.png")], &huge_png_header());
    assert_eq!(status, 413);
    assert!(
        body_json(&body)["error"].as_str().unwrap().starts_with("huge.png: 100000x100000 pixels is over the limit"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, _) = http(addr, "GET", "/nowhere", &[], b"");
    assert_eq!(status, 404);

    let (status, _, body) = http(addr, "GET", "/api/health", &[], b"");
    assert_eq!(status, 200);
    let health = body_json(&body);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model"]["source"], s(&run), "{health}");
    assert_eq!(health["model"]["architecture"], "cnn");
    assert!(health["model"]["parameters"].as_u64().unwrap() > 1000, "{health}");
    let (status, _, _) = http(addr, "POST", "/api/predict", &[], &bytes);
    assert_eq!(status, 200, "still serving after the bad requests");
}

#[test]
fn a_full_queue_answers_503_with_retry_after_at_once_and_accepted_requests_still_finish() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    // One place in the queue; the first request holds it while it waits 1.5 s for companions.
    let server = start_server(&run, &["--max-queue", "1", "--batch-wait", "1500"], false);
    let addr = server.addr.clone();
    let bytes = std::fs::read(photo("astronaut.jpg")).unwrap();
    let first = {
        let (addr, bytes) = (addr.clone(), bytes.clone());
        std::thread::spawn(move || http(&addr, "POST", "/api/predict", &[], &bytes))
    };
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let (status, head, body) = http(&addr, "POST", "/api/predict", &[("X-Filename", "second.jpg")], &bytes);
    let refused_in = start.elapsed();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    assert!(
        body_json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("second.jpg: busy, 1 requests are already waiting (--max-queue)")
    );
    assert!(refused_in < Duration::from_millis(900), "refused at once, not after the queue: {refused_in:?}");
    let (status, _, body) = first.join().unwrap();
    assert_eq!(status, 200, "the accepted request finishes: {}", String::from_utf8_lossy(&body));
    assert_eq!(body_json(&body)["faces"].as_array().unwrap().len(), 1);
    // The place is free again.
    let (status, _, _) = http(&addr, "POST", "/api/predict", &[], &bytes);
    assert_eq!(status, 200);
    assert_eq!(metric(&addr, "fer_requests_total{status=\"503\"}"), 1.0);
    assert_eq!(metric(&addr, "fer_requests_total{status=\"200\"}"), 2.0);
    assert_eq!(metric(&addr, "fer_queue_depth"), 0.0);
}

#[test]
fn faces_of_concurrent_requests_go_through_the_model_as_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let alone = json(&fer(&["predict", "--run", s(&run), "--json", s(&photo("astronaut.jpg"))]));
    let server = start_server(&run, &["--batch-wait", "2000"], false);
    let bytes = std::fs::read(photo("astronaut.jpg")).unwrap();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (addr, bytes) = (server.addr.clone(), bytes.clone());
            std::thread::spawn(move || http(&addr, "POST", "/api/predict", &[], &bytes))
        })
        .collect();
    for client in clients {
        let (status, _, body) = client.join().unwrap();
        assert_eq!(status, 200);
        let batched = body_json(&body);
        let (a, b) = (&alone["faces"][0], &batched["faces"][0]);
        assert_eq!(a["class"], b["class"]);
        assert_eq!(a["box"], b["box"]);
        for (class, p) in a["probabilities"].as_object().unwrap() {
            let q = b["probabilities"][class].as_f64().unwrap();
            assert!((p.as_f64().unwrap() - q).abs() < 2e-4, "{class}: alone {p}, in a batch {q}");
        }
    }
    // One model call carried the three requests' faces.
    assert_eq!(metric(&server.addr, "fer_batch_requests_count"), 1.0);
    assert_eq!(metric(&server.addr, "fer_batch_requests_sum"), 3.0);
    assert_eq!(metric(&server.addr, "fer_batch_faces_sum"), 3.0);
    assert_eq!(metric(&server.addr, "fer_faces_total"), 3.0);
}

/// Opens a connection and sends `partial` without finishing the request.
fn slow_client(addr: &str, partial: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(partial).unwrap();
    stream
}

/// True once the server has closed `stream` (read returns end of file or a reset).
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_clients_are_cut_off_and_a_connection_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let server = start_server(&run, &["--header-timeout", "1", "--body-timeout", "1", "--max-connections", "4"], false);
    let addr = server.addr.as_str();
    let bytes = std::fs::read(photo("astronaut.jpg")).unwrap();

    // Headers that never end: the connection is closed after --header-timeout.
    let mut slow = slow_client(addr, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nX-Fil");
    assert!(closed_by_server(&mut slow, Duration::from_secs(5)), "a client stuck in its headers is dropped");

    // A body that stops arriving: 408 after --body-timeout, naming the upload.
    let mut slow = slow_client(
        addr,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nX-Filename: slow.jpg\r\nContent-Length: 1000\r\n\r\n0123456789",
    );
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slow.jpg: the body did not arrive within 1 s (--body-timeout)"), "{answer}");

    // Four slow clients fill --max-connections 4: a fifth waits until the header deadline frees
    // their places, then is served.
    let start = Instant::now();
    let holders: Vec<TcpStream> = (0..4).map(|_| slow_client(addr, b"GET / HTTP/1.1\r\nHo")).collect();
    std::thread::sleep(Duration::from_millis(100));
    let (status, _, _) = http(addr, "POST", "/api/predict", &[], &bytes);
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(900), "served only once a place was free: {:?}", start.elapsed());
    drop(holders);

    // With places free, slow clients do not hold up a normal one.
    let _slow: Vec<TcpStream> = (0..2).map(|_| slow_client(addr, b"GET / HTTP/1.1\r\nHo")).collect();
    let (status, _, _) = http(addr, "GET", "/api/health", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0_and_every_request_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let mut server = start_server(&run, &["--log", "json"], true);
    let addr = server.addr.clone();
    let bytes = std::fs::read(photo("three-faces.jpg")).unwrap();
    let (status, _, _) = http(&addr, "GET", "/nowhere", &[], b"");
    assert_eq!(status, 404);
    let (status, _, _) = http(&addr, "POST", "/api/predict", &[("X-Filename", "notes.txt")], b"not pixels");
    assert_eq!(status, 400);

    // A request whose body is half sent when SIGTERM arrives.
    let (half, rest) = bytes.split_at(bytes.len() / 2);
    let mut stream = TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /api/predict HTTP/1.1\r\nHost: {addr}\r\nX-Filename: three.jpg\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(half).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(&addr).is_err(), "no new connections once stopping");
    stream.write_all(rest).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "the request in flight is answered: {answer}");
    assert!(answer.contains("\"path\":\"three.jpg\""), "{answer}");

    let (code, log) = server.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    // One JSON object per request, with what an operator filters on.
    let requests: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request")
        .collect();
    let seen: Vec<(String, String, u64)> = requests
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("GET".to_string(), "/nowhere".to_string(), 404),
            ("POST".into(), "/api/predict".into(), 400),
            ("POST".into(), "/api/predict".into(), 200)
        ],
        "{log}"
    );
    let last = &requests[2];
    assert_eq!(last["faces"], 3);
    assert_eq!(last["bytes_in"], bytes.len());
    assert!(last["bytes_out"].as_u64().unwrap() > 100 && last["ms"].as_f64().unwrap() > 0.0, "{last}");
    assert!(log.contains("SIGTERM") && log.contains("every request answered"), "{log}");
}

/// A PNG that claims 100,000 x 100,000 pixels in 45 bytes.
fn huge_png_header() -> Vec<u8> {
    fer_data::synth::png_header_claiming(100_000, 100_000)
}
