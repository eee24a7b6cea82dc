//! What the policy may know about a stored object: the facts its scopes match on.

/// What the policy may know about a stored object: nothing of its key material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub uid: String,
    /// User that created or registered the object; empty if unknown (then no one owns it).
    pub owner: String,
    /// Values of its Object Group attribute.
    pub object_groups: Vec<String>,
    /// Values of its Name attribute.
    pub names: Vec<String>,
}
