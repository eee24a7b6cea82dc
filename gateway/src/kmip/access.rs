//! Access control glue: the current [`Policy`] (swapped whole on reload), the facts the policy
//! may know about a stored object, and the policy used when none is configured.

use crate::config::{GatewayConfig, PolicySource};
use crate::kmip::store::StoredObject;
use arc_swap::ArcSwap;
use kmip_policy::{ObjectFacts, Operation, Policy, PolicyConfig, PolicyError, RuleConfig};
use kmip_wire::spec::tags;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AccessError {
    #[error("policy file {path}: {problem}")]
    Read { path: String, problem: String },
    #[error("policy: {0}")]
    Invalid(#[from] PolicyError),
}

/// Builds the policy the configuration asks for.
pub fn load_policy(cfg: &GatewayConfig) -> Result<Policy, AccessError> {
    match &cfg.policy {
        PolicySource::OwnerOnly => Ok(owner_only(cfg.users.iter().map(|u| u.name.clone()))?),
        PolicySource::Inline(p) => Ok(Policy::from_config(p.clone())?),
        PolicySource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| AccessError::Read {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
            Ok(Policy::from_toml_str(&text)?)
        }
    }
}

/// The default when no policy is configured: each user may do everything to the objects it
/// created and sees nothing else, so two clients of one gateway are isolated.
pub fn owner_only(users: impl Iterator<Item = String>) -> Result<Policy, PolicyError> {
    let (global, object): (Vec<Operation>, Vec<Operation>) = Operation::ALL
        .iter()
        .partition(|op| op.kind() == kmip_policy::OperationKind::Global);
    let names = |ops: Vec<Operation>| ops.iter().map(|o| o.to_string()).collect();
    Policy::from_config(PolicyConfig {
        users: users
            .map(|name| kmip_policy::UserConfig {
                name,
                groups: Vec::new(),
                admin: false,
            })
            .collect(),
        rules: vec![
            RuleConfig {
                name: "default: connect, locate and create".into(),
                everyone: true,
                operations: names(global),
                ..RuleConfig::default()
            },
            RuleConfig {
                name: "default: own objects".into(),
                everyone: true,
                operations: names(object),
                owned: true,
                ..RuleConfig::default()
            },
        ],
        ..PolicyConfig::default()
    })
}

/// What the policy may know about an object: owner, uid, Names, Object Groups.
pub fn facts(obj: &StoredObject) -> ObjectFacts {
    ObjectFacts {
        uid: obj.uid.to_string(),
        owner: obj.owner.to_string(),
        object_groups: obj
            .all(tags::OBJECT_GROUP)
            .filter_map(|a| a.as_text().map(str::to_owned))
            .collect(),
        names: obj
            .all(tags::NAME)
            .filter_map(|a| a.as_name())
            .map(|n| n.value)
            .collect(),
    }
}

/// The policy in force; readers take a snapshot per request.
pub struct Access {
    policy: ArcSwap<(u64, Policy)>,
}

impl Access {
    pub fn new(policy: Policy) -> Access {
        Access {
            policy: ArcSwap::from_pointee((0, policy)),
        }
    }

    /// The policy in force and its generation (a new number at every reload, so cached Locate
    /// results computed under an older policy are never served).
    pub fn current(&self) -> Arc<(u64, Policy)> {
        self.policy.load_full()
    }

    pub fn replace(&self, policy: Policy) {
        self.policy.rcu(|old| (old.0 + 1, policy.clone()));
    }
}
