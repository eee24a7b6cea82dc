//! `kmip-gateway keys list|show|revoke|destroy|export-meta`: key administration of a running
//! gateway through its admin listener (`/keys`, with the admin token), so the operator needs no
//! KMIP client certificate or policy to find, revoke or destroy a key. Revoke and Destroy name
//! the operator (`--operator`, default the login name), which the gateway's audit trail records.

use super::remote::{admin_request, admin_target, AdminTarget};
use super::{write_atomic, Access, CliError};
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// `export-meta` writes metadata of other users' objects: private to whoever ran it.
const EXPORT_ACCESS: Access = Access {
    mode: 0o600,
    group_mode: 0o600,
    group: None,
};

/// Where the gateway's admin listener is and which token it wants.
#[derive(Args)]
pub(crate) struct AdminArgs {
    /// Admin listener address (default: from --config, else 127.0.0.1:9696).
    #[arg(long)]
    admin: Option<String>,
    /// The gateway's configuration file (for its admin listener and [admin] token_file).
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// The data folder of a gateway running the embedded default (holds admin.token).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The admin token file (default: from --config, else <data_dir>/admin.token).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl AdminArgs {
    pub(super) fn target(self) -> Result<AdminTarget, CliError> {
        admin_target(
            self.admin,
            self.token_file,
            self.config.as_deref(),
            self.data_dir,
        )
    }
}

/// Which objects: every filter given must match.
#[derive(Args)]
pub(crate) struct Filters {
    /// Owner: the user that created or registered the object.
    #[arg(long)]
    user: Option<String>,
    /// A Name of the object.
    #[arg(long)]
    name: Option<String>,
    /// An Object Group of the object.
    #[arg(long)]
    group: Option<String>,
    /// State as KMIP names it: PreActive, Active, Deactivated, Compromised, Destroyed,
    /// DestroyedCompromised.
    #[arg(long)]
    state: Option<String>,
    /// Object Type as KMIP names it: SymmetricKey, SecretData, PrivateKey, PublicKey,
    /// Certificate, OpaqueObject.
    #[arg(long = "type")]
    object_type: Option<String>,
}

impl Filters {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("user", &self.user),
            ("name", &self.name),
            ("group", &self.group),
            ("state", &self.state),
            ("type", &self.object_type),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Lists objects, one line each: identifier, owner, type, state, Names, Object Groups,
    /// created, last change. At most one page (1000) per call; a last line says how to go on.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Only objects whose identifier sorts after this one (the next page).
        #[arg(long)]
        after: Option<String>,
        /// At most this many objects (1 to 1000).
        #[arg(long)]
        limit: Option<usize>,
        /// The gateway's JSON answer as it is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Every attribute of one object (never key material), as JSON.
    Show {
        uid: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revokes an object (KMIP Revoke): Active → Deactivated, or Compromised for
    /// KeyCompromise/CACompromise.
    Revoke {
        uid: String,
        /// Revocation Reason Code as KMIP names it: Unspecified, KeyCompromise, CACompromise,
        /// AffiliationChanged, Superseded, CessationOfOperation, PrivilegeWithdrawn.
        #[arg(long)]
        reason: String,
        /// When the compromise occurred (RFC 3339, e.g. 2026-12-01T08:00:00Z); required for
        /// KeyCompromise and CACompromise.
        #[arg(long)]
        compromise_date: Option<String>,
        /// Revocation Message recorded with the reason.
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        who: Operator,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Destroys an object (KMIP Destroy; its key material is gone for good). An Active object is
    /// revoked first (KMIP allows no Active → Destroyed), with --reason or CessationOfOperation.
    Destroy {
        uid: String,
        /// Revocation Reason Code if the object must be revoked first.
        #[arg(long)]
        reason: Option<String>,
        /// Revocation Message if the object must be revoked first.
        #[arg(long)]
        message: Option<String>,
        /// Do not ask: destroy (otherwise the identifier must be typed on the terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        who: Operator,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Writes the metadata (every attribute, never key material) of the selected objects to a
    /// JSON file, following every page.
    ExportMeta {
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Who acts, for the audit trail.
#[derive(Args)]
pub(crate) struct Operator {
    /// Your name in the gateway's audit trail (default: $SUDO_USER, else $USER, else uid-N).
    #[arg(long)]
    operator: Option<String>,
}

impl Operator {
    pub(super) fn name(self) -> Result<String, CliError> {
        let name = self
            .operator
            .or_else(|| std::env::var("SUDO_USER").ok())
            .or_else(|| std::env::var("USER").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("uid-{}", rustix::process::getuid().as_raw()));
        if name.chars().any(char::is_control) {
            return Err(CliError::Refused(
                "--operator: control characters are not allowed".into(),
            ));
        }
        Ok(name)
    }
}

/// Percent-encodes `text` for a URL path segment or query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn with_query(path: String, params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return path;
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// One request; the parsed JSON answer, or the gateway's refusal as an error.
pub(super) fn call(target: &AdminTarget, method: &str, path: &str) -> Result<Json, CliError> {
    let (status, body) = admin_request(target, method, path)?;
    let fail = |problem: String| CliError::Admin {
        addr: target.addr.clone(),
        problem,
    };
    if status != 200 {
        let detail = serde_json::from_str::<Json>(&body)
            .ok()
            .and_then(|j| j.get("error").and_then(Json::as_str).map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        return Err(fail(format!("HTTP {status}: {detail}")));
    }
    serde_json::from_str(&body).map_err(|e| fail(format!("unexpected answer: {e}")))
}

pub(crate) fn run(cmd: KeysCommand) -> Result<String, CliError> {
    match cmd {
        KeysCommand::List {
            filters,
            after,
            limit,
            json,
            admin,
        } => {
            let mut params = filters.query();
            params.extend(after.map(|a| ("after", a)));
            params.extend(limit.map(|l| ("limit", l.to_string())));
            let answer = call(
                &admin.target()?,
                "GET",
                &with_query("/keys".into(), &params),
            )?;
            Ok(if json {
                format!("{answer}\n")
            } else {
                table(&answer)
            })
        }
        KeysCommand::Show { uid, admin } => {
            let answer = call(&admin.target()?, "GET", &format!("/keys/{}", encode(&uid)))?;
            Ok(format!("{answer:#}\n"))
        }
        KeysCommand::Revoke {
            uid,
            reason,
            compromise_date,
            message,
            who,
            admin,
        } => {
            let mut params = vec![("reason", reason)];
            params.extend(compromise_date.map(|d| ("compromise_date", d)));
            params.extend(message.map(|m| ("message", m)));
            let target = admin.target()?.with_operator(who.name()?);
            let path = with_query(format!("/keys/{}/revoke", encode(&uid)), &params);
            outcome(&call(&target, "POST", &path)?)
        }
        KeysCommand::Destroy {
            uid,
            reason,
            message,
            yes,
            who,
            admin,
        } => {
            if !yes {
                confirm(&uid)?;
            }
            let mut params = Vec::new();
            params.extend(reason.map(|r| ("reason", r)));
            params.extend(message.map(|m| ("message", m)));
            let target = admin.target()?.with_operator(who.name()?);
            let path = with_query(format!("/keys/{}/destroy", encode(&uid)), &params);
            outcome(&call(&target, "POST", &path)?)
        }
        KeysCommand::ExportMeta {
            filters,
            out,
            admin,
        } => export(&admin.target()?, &filters, &out),
    }
}

/// Asks for the identifier on the terminal; refuses when there is none to ask on.
fn confirm(uid: &str) -> Result<(), CliError> {
    let refuse = || {
        CliError::Refused(format!(
            "not destroyed: destroying {uid} cannot be undone; pass --yes, or type the \
             identifier when asked on a terminal"
        ))
    };
    if !std::io::stdin().is_terminal() {
        return Err(refuse());
    }
    eprint!("Destroying {uid} cannot be undone. Type its identifier to go on: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|_| refuse())?;
    if line.trim() != uid {
        return Err(refuse());
    }
    Ok(())
}

fn outcome(answer: &Json) -> Result<String, CliError> {
    let steps: Vec<&str> = answer["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    Ok(format!(
        "{}: {} (now {})\n",
        answer["uid"].as_str().unwrap_or("?"),
        steps.join(", then "),
        answer["state"].as_str().unwrap_or("?")
    ))
}

fn table(answer: &Json) -> String {
    let text = |v: &Json| v.as_str().unwrap_or("-").to_owned();
    let list = |v: &Json| {
        let items: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(",")
        }
    };
    let mut out = format!(
        "{:<36} {:<16} {:<12} {:<20} {:<20} {:<16} {:<20} {}\n",
        "UID", "OWNER", "TYPE", "STATE", "NAMES", "GROUPS", "CREATED", "LAST CHANGE"
    );
    for o in answer["objects"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<36} {:<16} {:<12} {:<20} {:<20} {:<16} {:<20} {}\n",
            text(&o["uid"]),
            text(&o["owner"]),
            text(&o["type"]),
            text(&o["state"]),
            list(&o["names"]),
            list(&o["groups"]),
            text(&o["created"]),
            text(&o["last_change"]),
        ));
    }
    if let Some(next) = answer["next_after"].as_str() {
        out.push_str(&format!(
            "… more objects match: run again with --after {next}\n"
        ));
    }
    out
}

/// Follows every page with all attributes, then writes them at once (a partial export is never
/// left behind).
fn export(
    target: &AdminTarget,
    filters: &Filters,
    out: &std::path::Path,
) -> Result<String, CliError> {
    let mut objects = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = filters.query();
        params.push(("detail", "1".into()));
        params.extend(after.take().map(|a| ("after", a)));
        let answer = call(target, "GET", &with_query("/keys".into(), &params))?;
        objects.extend(answer["objects"].as_array().cloned().unwrap_or_default());
        match answer["next_after"].as_str() {
            Some(next) if answer["more"] == Json::Bool(true) => after = Some(next.to_owned()),
            _ => break,
        }
    }
    let count = objects.len();
    let filter: serde_json::Map<String, Json> = filters
        .query()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Json::String(v)))
        .collect();
    let doc = serde_json::json!({ "gateway": target.addr, "filters": filter, "objects": objects });
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::Refused(format!("cannot write the export: {e}")))?;
    write_atomic(out, format!("{text}\n").as_bytes(), EXPORT_ACCESS)?;
    Ok(format!(
        "exported the metadata of {count} objects to {} (no key material)\n",
        out.display()
    ))
}
