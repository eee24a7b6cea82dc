//! `kmip-gateway upstream adopt --user U (--uid UPSTREAM_UID | --name NAME)`: a KMIP proxy
//! adopts an object its upstream held before, for user U. The mapping belongs to the running
//! gateway, so this is a request to its admin listener (`POST /upstream/adopt`, with the admin
//! token and the operator's name, which the audit trail records).
//! `kmip-gateway upstream copy --config PROXY --to LOCAL`: the proxy's extractable objects into
//! a local installation (`cli/migrate.rs`; the proxy stopped).

use super::keys::{call, with_query, AdminArgs, Operator};
use super::CliError;
use clap::{Args, Subcommand};
use serde_json::Value as Json;

/// Which upstream object: by its identifier there, or by a Name exactly one carries.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Which {
    /// The upstream's Unique Identifier of the object; the adopted object keeps it.
    #[arg(long)]
    uid: Option<String>,
    /// A Name of the object upstream (exactly one upstream object may carry it).
    #[arg(long)]
    name: Option<String>,
}

/// `upstream adopt`'s arguments.
#[derive(Args)]
pub(crate) struct AdoptArgs {
    /// The owner: a user of the gateway's configuration.
    #[arg(long)]
    user: String,
    #[command(flatten)]
    which: Which,
    #[command(flatten)]
    who: Operator,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand)]
pub(crate) enum UpstreamCommand {
    /// Maps an object that existed on the upstream before to a gateway object owned by --user,
    /// under the upstream's identifier, with its Names, Object Groups, state and dates. Nothing
    /// changes upstream.
    Adopt(AdoptArgs),
    /// Copies every extractable object of a stopped KMIP proxy (UID, attributes, state, the
    /// material read from the upstream; tombstones) into a local vault or PostgreSQL
    /// installation and verifies each copy; non-extractable keys stay upstream and are listed.
    /// Never overwrites; a re-run resumes.
    Copy(super::migrate::UpstreamCopyArgs),
}

pub(crate) fn adopt(args: AdoptArgs) -> Result<String, CliError> {
    let AdoptArgs {
        user,
        which,
        who,
        admin,
    } = args;
    let mut params = vec![("user", user)];
    params.extend(which.uid.map(|u| ("uid", u)));
    params.extend(which.name.map(|n| ("name", n)));
    let target = admin.target()?.with_operator(who.name()?);
    let answer = call(
        &target,
        "POST",
        &with_query("/upstream/adopt".into(), &params),
    )?;
    Ok(adopted(&answer))
}

fn adopted(answer: &Json) -> String {
    let text = |k: &str| answer[k].as_str().unwrap_or("?").to_owned();
    let names: Vec<&str> = answer["names"]
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    format!(
        "adopted {} for {}: {} {}, names [{}]\n",
        text("uid"),
        text("owner"),
        text("state"),
        text("type"),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_one_line() {
        let answer = serde_json::json!({
            "uid": "42", "owner": "a", "state": "Active", "type": "SymmetricKey",
            "names": ["disk-1", "vol"]
        });
        assert_eq!(
            adopted(&answer),
            "adopted 42 for a: Active SymmetricKey, names [disk-1, vol]\n"
        );
    }
}
