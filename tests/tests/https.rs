//! KMIP over HTTPS against the real binary (`--https-listen`): curl with the array's certificate
//! posts TTLV, XML and JSON and gets each answer in its own encoding; a revoked client is cut and
//! refused on the HTTPS listener too; a body over the limit is refused (413) from its announced
//! length, before any of it is sent; a large body is read after the 100 Continue.

use kmip_e2e::{gateway_cli, GatewayOptions, GatewayProcess};
use kmip_gateway::client::{ClientTls, Encoding, KmipClient, Transport};
use kmip_wire::model::{
    ProtocolVersion, QueryRequest, RequestBatchItem, RequestHeader, RequestMessage, RequestPayload,
    ResponseMessage, ResultStatus,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn start() -> GatewayProcess {
    GatewayProcess::start_with(&GatewayOptions {
        admin: true,
        extra_args: vec!["--https-listen".into(), "127.0.0.1:0".into()],
        ..Default::default()
    })
}

fn query() -> RequestMessage {
    RequestMessage {
        header: RequestHeader::new(ProtocolVersion { major: 2, minor: 1 }),
        items: vec![RequestBatchItem::new(RequestPayload::Query(QueryRequest {
            functions: vec![kmip_wire::model::QueryFunction::QueryObjects],
        }))],
    }
}

fn succeeded(response: &kmip_wire::Ttlv) -> bool {
    ResponseMessage::from_ttlv(response)
        .ok()
        .and_then(|r| {
            r.items
                .first()
                .map(|i| i.result_status == ResultStatus::Success)
        })
        .unwrap_or(false)
}

/// `curl` posting `body` as `content_type`: (status, response Content-Type, body).
fn curl(gw: &GatewayProcess, content_type: &str, body: &[u8]) -> (String, String, Vec<u8>) {
    curl_with(gw, content_type, body, &[])
}

/// [`curl`] with extra arguments.
fn curl_with(
    gw: &GatewayProcess,
    content_type: &str,
    body: &[u8],
    extra: &[&str],
) -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (request, response) = (dir.path().join("request"), dir.path().join("response"));
    std::fs::write(&request, body).unwrap();
    let port = gw
        .https_addr()
        .expect("the HTTPS listener's address")
        .port();
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cert", &p(&gw.client_cert())])
        .args(["--key", &p(&gw.client_key()), "--cacert", &p(&gw.ca_cert())])
        .args(["-H", &format!("Content-Type: {content_type}")])
        .args([
            "--data-binary",
            &format!("@{}", p(&request)),
            "-o",
            &p(&response),
        ])
        .args(["-w", "%{http_code} %{content_type}"])
        .args(extra)
        .arg(format!("https://localhost:{port}/kmip"))
        .output()
        .expect("run curl");
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, ct) = written.split_once(' ').unwrap_or((&written, ""));
    let body = std::fs::read(&response).unwrap_or_default();
    (status.to_owned(), ct.to_owned(), body)
}

#[test]
fn curl_posts_ttlv_xml_and_json_and_gets_each_answer_in_kind() {
    let gw = start();
    let request = query().to_ttlv();
    let limits = kmip_wire::Limits::default();

    let (status, ct, body) = curl(
        &gw,
        "application/octet-stream",
        &request.to_bytes().unwrap(),
    );
    assert_eq!(
        (status.as_str(), ct.as_str()),
        ("200", "application/octet-stream"),
        "{}",
        gw.log()
    );
    assert!(succeeded(
        &kmip_wire::decode(&body.into(), &limits).unwrap()
    ));

    let xml = kmip_wire::xml::to_xml_string(&request);
    let (status, ct, body) = curl(&gw, "text/xml", xml.as_bytes());
    assert_eq!(
        (status.as_str(), ct.as_str()),
        ("200", "text/xml"),
        "{}",
        gw.log()
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("<ResponseMessage>"), "{text}");
    let tree = kmip_wire::xml::parse_node(&text)
        .and_then(|n| n.to_ttlv(&kmip_wire::xml::Bindings::new()))
        .unwrap();
    assert!(succeeded(&tree), "{text}");

    let json = kmip_wire::json::to_json_string(&request);
    let (status, ct, body) = curl(&gw, "application/json", json.as_bytes());
    assert_eq!(
        (status.as_str(), ct.as_str()),
        ("200", "application/json"),
        "{}",
        gw.log()
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        succeeded(&kmip_wire::json::from_json_str(&text).unwrap()),
        "{text}"
    );

    // A malformed body: 400 saying what is wrong, not a dropped connection.
    let (status, ct, body) = curl(&gw, "application/json", b"{\"tag\":\"Nope\",\"value\":[]}");
    assert_eq!((status.as_str(), ct.as_str()), ("400", "text/plain"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("the JSON body is not a KMIP message")
            && text.contains("unknown tag \"Nope\""),
        "{text}"
    );

    // Metrics labels are the listener's own, whatever the client sent.
    let (_, metrics) = gw.admin_get("/metrics");
    for line in [
        r#"kmip_https_requests_total{encoding="ttlv",status="200"} 1"#,
        r#"kmip_https_requests_total{encoding="xml",status="200"} 1"#,
        r#"kmip_https_requests_total{encoding="json",status="200"} 1"#,
        r#"kmip_https_requests_total{encoding="json",status="400"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    // The audit trail records HTTPS requests like TTLV ones (written by its own thread: wait).
    let audit = gw.data_dir().join("audit").join("audit.log");
    let queries = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .matches(r#""user":"purefa","operation":"Query""#)
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queries() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        queries(),
        3,
        "{}",
        std::fs::read_to_string(&audit).unwrap_or_default()
    );
}

async fn https_client(gw: &GatewayProcess, tls: &ClientTls) -> Result<KmipClient, String> {
    let addr = gw.https_addr().unwrap().to_string();
    let mut c = KmipClient::connect_over(&addr, "localhost", tls, Transport::Https(Encoding::Json))
        .await
        .map_err(|e| e.to_string())?;
    c.set_timeout(Duration::from_secs(10));
    Ok(c)
}

async fn call(c: &mut KmipClient) -> Result<(), String> {
    let r = c
        .call(&query().to_ttlv())
        .await
        .map_err(|e| e.to_string())?;
    succeeded(&r)
        .then_some(())
        .ok_or_else(|| "Query failed".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_is_cut_and_refused_on_https_too() {
    let gw = start();
    let tls = ClientTls::from_files(&gw.ca_cert(), &gw.client_cert(), &gw.client_key()).unwrap();
    let mut live = https_client(&gw, &tls).await.unwrap();
    // Two requests on one connection: keep-alive.
    call(&mut live)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    call(&mut live).await.unwrap();
    let (ok, out) = gateway_cli(&[
        "pki",
        "revoke",
        "--dir",
        gw.pki_dir().to_str().unwrap(),
        "--cert",
        gw.client_cert().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (code, body) = gw.admin_request("POST", "/reload", Some(&gw.admin_token()));
    assert_eq!(code, 200, "{body}");
    assert!(
        call(&mut live).await.is_err(),
        "the live HTTPS connection must be cut\n{}",
        gw.log()
    );
    let fresh = match https_client(&gw, &tls).await {
        Ok(mut c) => call(&mut c).await,
        Err(e) => Err(e),
    };
    assert!(fresh.is_err(), "a new HTTPS connection must be refused");
    assert!(gw.log().contains("certificate_revoked"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_from_its_announced_length() {
    let gw = start();
    let tls = ClientTls::from_files(&gw.ca_cert(), &gw.client_cert(), &gw.client_key()).unwrap();
    let addr = gw.https_addr().unwrap().to_string();
    // TLS only: the head is written by hand, and no byte of the announced GiB follows it.
    let mut c = KmipClient::connect_over(&addr, "localhost", &tls, Transport::Ttlv)
        .await
        .unwrap();
    c.set_timeout(Duration::from_secs(30));
    c.send_raw(
        b"POST /kmip HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
          Content-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = String::from_utf8(c.read_until_closed().await.unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains("Connection: close") && answer.contains("max_message_size"),
        "{answer}"
    );
}

#[test]
fn a_large_body_is_sent_after_the_go_ahead_and_read_whole() {
    let gw = start();
    // 1.5 MiB of JSON (padded with whitespace): over the TTLV limit, within the text one. curl
    // holds the body back until the gateway's 100 Continue (for up to a minute: longer than the
    // test's --max-time, so a missing go-ahead fails the exchange).
    let mut json = kmip_wire::json::to_json_string(&query().to_ttlv());
    json.insert_str(1, &" ".repeat(3 << 19));
    let (status, ct, body) = curl_with(
        &gw,
        "application/json",
        json.as_bytes(),
        &["-H", "Expect: 100-continue", "--expect100-timeout", "60"],
    );
    assert_eq!(
        (status.as_str(), ct.as_str()),
        ("200", "application/json"),
        "{}",
        gw.log()
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        succeeded(&kmip_wire::json::from_json_str(&text).unwrap()),
        "{text}"
    );
}
