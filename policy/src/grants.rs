//! What one caller may do, precomputed from the rules that reach it, so that a decision costs a
//! few hash lookups whatever the number of rules.

use std::collections::HashMap;

use crate::facts::ObjectFacts;
use crate::operation::OpSet;

#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    pub(crate) admin: bool,
    pub(crate) global: OpSet,
    all_objects: OpSet,
    owned: OpSet,
    by_owner: HashMap<String, OpSet>,
    by_uid: HashMap<String, OpSet>,
    by_object_group: HashMap<String, OpSet>,
    by_prefix: HashMap<String, OpSet>,
    /// Distinct byte lengths of the keys of `by_prefix`: a Name is looked up once per length.
    prefix_lens: Vec<usize>,
}

/// The scope of one rule, as the index needs it.
pub(crate) struct ScopeRef<'a> {
    pub(crate) all_objects: bool,
    pub(crate) owned: bool,
    pub(crate) owners: &'a [String],
    pub(crate) uids: &'a [String],
    pub(crate) object_groups: &'a [String],
    pub(crate) name_prefixes: &'a [String],
}

impl Grants {
    /// Adds a rule that reaches this caller: `scope` is `None` for a rule of global operations.
    pub(crate) fn add(&mut self, ops: OpSet, scope: Option<ScopeRef<'_>>) {
        let Some(scope) = scope else {
            self.global.union(ops);
            return;
        };
        if scope.all_objects {
            self.all_objects.union(ops);
        }
        if scope.owned {
            self.owned.union(ops);
        }
        for (map, keys) in [
            (&mut self.by_owner, scope.owners),
            (&mut self.by_uid, scope.uids),
            (&mut self.by_object_group, scope.object_groups),
            (&mut self.by_prefix, scope.name_prefixes),
        ] {
            for key in keys {
                map.entry(key.clone()).or_default().union(ops);
            }
        }
        for prefix in scope.name_prefixes {
            if !self.prefix_lens.contains(&prefix.len()) {
                self.prefix_lens.push(prefix.len());
            }
        }
    }

    /// Every object operation granted to `user` on `obj`; empty means the object is hidden.
    pub(crate) fn on(&self, user: &str, obj: &ObjectFacts) -> OpSet {
        let mut ops = self.all_objects;
        // An object without a recorded owner is nobody's, even for a caller with an empty name.
        if !obj.owner.is_empty() && obj.owner == user {
            ops.union(self.owned);
        }
        if let Some(s) = lookup(&self.by_owner, &obj.owner) {
            ops.union(s);
        }
        if let Some(s) = lookup(&self.by_uid, &obj.uid) {
            ops.union(s);
        }
        for g in &obj.object_groups {
            if let Some(s) = lookup(&self.by_object_group, g) {
                ops.union(s);
            }
        }
        for name in &obj.names {
            for &len in &self.prefix_lens {
                // `get` is None past the end or inside a UTF-8 sequence: no prefix can match there.
                if let Some(s) = name.get(..len).and_then(|p| lookup(&self.by_prefix, p)) {
                    ops.union(s);
                }
            }
        }
        ops
    }
}

/// Skips hashing when a map is empty, the common case for most scope kinds.
fn lookup(map: &HashMap<String, OpSet>, key: &str) -> Option<OpSet> {
    if map.is_empty() {
        None
    } else {
        map.get(key).copied()
    }
}
