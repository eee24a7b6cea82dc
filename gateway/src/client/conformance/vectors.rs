//! Vector files: which files a command line names, and a file read as request/response pairs.

use kmip_wire::spec::tags;
use kmip_wire::xml::{parse_document, XmlError, XmlNode, MAX_XML_SIZE};
use std::path::{Path, PathBuf};

use super::ConformanceError;

/// The text of a vector file; one larger than [`MAX_XML_SIZE`] is refused before it is read.
pub fn read_vector_file(path: &Path) -> Result<String, XmlError> {
    let io = |message: String| XmlError::Io {
        file: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    if meta.len() > MAX_XML_SIZE as u64 {
        return Err(io(format!("larger than {MAX_XML_SIZE} bytes")));
    }
    std::fs::read_to_string(path).map_err(|e| io(e.to_string()))
}

/// The files named on a command line: files as given, folders expanded to their `*.xml` files
/// in name order.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConformanceError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ConformanceError::Dir {
                path: path.display().to_string(),
                source,
            })?;
            let mut found = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| ConformanceError::Dir {
                    path: path.display().to_string(),
                    source,
                })?;
                let p = entry.path();
                if p.is_file() && p.extension().is_some_and(|e| e == "xml") {
                    found.push(p);
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The name a result line shows for a file.
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Request/response pairs of a vector file, in order.
pub(super) fn exchanges(path: &Path) -> Result<Vec<(XmlNode, XmlNode)>, ConformanceError> {
    let nodes = parse_document(&read_vector_file(path)?)?;
    if nodes.len() % 2 != 0 {
        return Err(ConformanceError::Vector(format!(
            "{} messages: requests and responses do not pair up",
            nodes.len()
        )));
    }
    let mut pairs = Vec::with_capacity(nodes.len() / 2);
    let mut it = nodes.into_iter();
    while let (Some(req), Some(resp)) = (it.next(), it.next()) {
        if req.tag != tags::REQUEST_MESSAGE || resp.tag != tags::RESPONSE_MESSAGE {
            return Err(ConformanceError::Vector(format!(
                "message {} is not a RequestMessage followed by a ResponseMessage",
                pairs.len() * 2
            )));
        }
        pairs.push((req, resp));
    }
    Ok(pairs)
}
