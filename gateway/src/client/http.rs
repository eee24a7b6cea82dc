//! One KMIP-over-HTTPS exchange of the client: `POST /kmip` with the request in the chosen
//! encoding, the response read back by its `Content-Length` and decoded to TTLV.

use super::ClientError;
use crate::front::server::Encoding;
use bytes::Bytes;
use kmip_wire::ttlv::{decode, Limits, Ttlv};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head read: a status line and a few header fields.
const MAX_RESPONSE_HEAD: usize = 8192;

/// Largest response body read, as a multiple of the TTLV size limit: the text encodings take
/// a few times the bytes of TTLV.
const TEXT_RESPONSE_EXPANSION: usize = 4;

/// Sends `request` as one HTTP request in `encoding` and returns the decoded response. A status
/// other than 200 is [`ClientError::Http`] with the server's explanation.
pub(super) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    encoding: Encoding,
    request: &Ttlv,
    limits: &Limits,
) -> Result<Ttlv, ClientError> {
    let body: Vec<u8> = match encoding {
        Encoding::Ttlv => request.to_bytes()?.to_vec(),
        Encoding::Xml => kmip_wire::xml::to_xml_string(request).into_bytes(),
        Encoding::Json => kmip_wire::json::to_json_string(request).into_bytes(),
    };
    let head = format!(
        "POST /kmip HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        encoding.content_type(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    let (status, content_length, mut rest) = read_head(stream).await?;
    let max_body = limits
        .max_message_size
        .saturating_mul(TEXT_RESPONSE_EXPANSION);
    if content_length > max_body {
        return Err(ClientError::Http {
            status,
            message: format!("response body of {content_length} bytes is over {max_body}"),
        });
    }
    if rest.len() > content_length {
        return Err(ClientError::Http {
            status,
            message: "more bytes than the Content-Length".into(),
        });
    }
    let have = rest.len();
    rest.resize(content_length, 0);
    stream.read_exact(&mut rest[have..]).await?;
    if status != 200 {
        return Err(ClientError::Http {
            status,
            message: String::from_utf8_lossy(&rest).trim().to_owned(),
        });
    }
    let text = || {
        String::from_utf8(rest.clone()).map_err(|_| ClientError::Http {
            status,
            message: "response body is not UTF-8".into(),
        })
    };
    let malformed = |e: String| ClientError::Http {
        status,
        message: format!("malformed {} response: {e}", encoding.content_type()),
    };
    match encoding {
        Encoding::Ttlv => Ok(decode(&Bytes::from(rest), limits)?),
        Encoding::Xml => kmip_wire::xml::parse_node(&text()?)
            .and_then(|n| n.to_ttlv(&kmip_wire::xml::Bindings::new()))
            .map_err(|e| malformed(e.to_string())),
        Encoding::Json => {
            kmip_wire::json::from_json_str(&text()?).map_err(|e| malformed(e.to_string()))
        }
    }
}

/// Reads the response head: status code, Content-Length, and the body bytes read with it.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(u16, usize, Vec<u8>), ClientError> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(bad_head("over 8 KiB"));
        }
        let room = (MAX_RESPONSE_HEAD - buf.len()) as u64;
        if (&mut *stream).take(room).read_buf(&mut buf).await? == 0 {
            return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad_head("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad_head("no status code"))?;
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| bad_head("no Content-Length"))?;
    Ok((status, content_length, buf[end..].to_vec()))
}

fn bad_head(what: &str) -> ClientError {
    ClientError::Http {
        status: 0,
        message: format!("malformed response head: {what}"),
    }
}
