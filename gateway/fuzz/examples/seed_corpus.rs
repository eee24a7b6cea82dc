//! Writes the TTLV encoding of every message of the OASIS vector files into a corpus folder:
//! `cargo run --manifest-path gateway/fuzz/Cargo.toml --example seed_corpus -- VECTORS_DIR OUT_DIR`
//! Placeholders get fixed dummy values of their type.

use std::path::{Path, PathBuf};

use kmip_wire::xml::{parse_document, Bindings};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, vectors, out] = args.as_slice() else {
        return Err("usage: seed_corpus VECTORS_DIR OUT_DIR".into());
    };
    let mut list = Vec::new();
    files(Path::new(vectors), &mut list)?;
    list.sort();
    std::fs::create_dir_all(out)?;
    let mut written = 0;
    for f in &list {
        let stem = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("x")
            .to_owned();
        for (i, node) in parse_document(&std::fs::read_to_string(f)?)?
            .iter()
            .enumerate()
        {
            let bytes = node.to_ttlv(&Bindings::dummies(node))?.to_bytes()?;
            std::fs::write(Path::new(out).join(format!("{stem}-{i:02}")), &bytes)?;
            written += 1;
        }
    }
    println!("{written} messages from {} files", list.len());
    Ok(())
}
