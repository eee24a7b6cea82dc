//! Locate: which objects match a filter, newest first and paged, served from the Locate cache
//! while nothing the answer depends on has changed.

use super::object::{is_destroyed, object_type_of};
use super::{OpContext, OpError, Ops};
use crate::kmip::access::facts;
use crate::kmip::locate_cache::{CacheKey, Dependency};
use crate::kmip::store::StoredObject;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use kmip_wire::ttlv::Tag;

impl Ops {
    /// Objects matching a Locate filter, for `user`'s visibility predicate.
    pub fn locate_filtered(
        &self,
        ctx: &OpContext<'_>,
        r: &LocateRequest,
        visible: impl Fn(&StoredObject) -> bool,
    ) -> Result<LocateResponse, OpError> {
        // Destroyed objects keep their attributes but are found only when the filter asks for
        // a State: an array locating its key by Name must not be handed a destroyed one.
        let asks_state = r.attributes.iter().any(|a| a.is(tags::STATE));
        // The filter's indexed attributes narrow the candidates through the store's index; the
        // full filter still applies to them. Only a filter with none of them scans.
        let candidates = self
            .store
            .candidates(&r.attributes)
            .unwrap_or_else(|| self.store.snapshot());
        let mut found: Vec<(i64, String)> = candidates
            .into_iter()
            .filter(|o| {
                (asks_state || !is_destroyed(o)) && matches_filter(o, &r.attributes) && visible(o)
            })
            .map(|o| {
                (
                    o.first(tags::INITIAL_DATE)
                        .and_then(|a| a.as_datetime())
                        .unwrap_or(0),
                    o.uid.to_string(),
                )
            })
            .collect();
        // Newest first, as KMIP asks; the identifier breaks ties so results are stable.
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let total = found.len();
        let offset = r.offset_items.unwrap_or(0).max(0) as usize;
        // The configured cap applies whatever the client asks for, or when it asks for no cap.
        let max = r
            .maximum_items
            .filter(|m| *m > 0)
            .map(|m| m as usize)
            .unwrap_or(usize::MAX)
            .min(self.max_locate_results);
        let ids: Vec<String> = found
            .into_iter()
            .skip(offset)
            .take(max)
            .map(|(_, u)| u)
            .collect();
        let _ = ctx;
        Ok(LocateResponse {
            located_items: Some(i32::try_from(total).unwrap_or(i32::MAX)),
            unique_identifiers: ids,
        })
    }

    pub(super) async fn locate(
        &self,
        ctx: &mut OpContext<'_>,
        r: &LocateRequest,
    ) -> Result<LocateResponse, OpError> {
        let current = self.access.current();
        let (policy_generation, policy) = (current.0, &current.1);
        let id = policy.identity(ctx.user);
        let mut filter: Vec<Vec<u8>> = r
            .attributes
            .iter()
            .map(StoredObject::attribute_key)
            .collect();
        filter.sort();
        let mut request = Vec::new();
        for part in [
            r.maximum_items.map(i64::from),
            r.offset_items.map(i64::from),
            r.storage_status_mask.map(i64::from),
            r.object_group_member.map(|m| i64::from(m.to_u32())),
        ] {
            request.extend_from_slice(&part.unwrap_or(-1).to_be_bytes());
        }
        for f in filter {
            request.extend_from_slice(&(f.len() as u64).to_be_bytes());
            request.extend_from_slice(&f);
        }
        let key = CacheKey::new(policy_generation, ctx.user, &request);
        // Visibility reads the owner (immutable), Names and Object Groups; tombstones are
        // filtered by State.
        let mut deps = vec![
            Dependency::Membership,
            Dependency::Attribute(AttributeName::Tag(tags::STATE)),
            Dependency::Attribute(AttributeName::Tag(tags::NAME)),
            Dependency::Attribute(AttributeName::Tag(tags::OBJECT_GROUP)),
        ];
        for a in &r.attributes {
            let d = Dependency::Attribute(a.name.clone());
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
        let resp = self
            .locate_cache
            .get_or_compute(key, deps, || {
                self.locate_filtered(ctx, r, |o| policy.may_see(&id, &facts(o)))
            })
            .await?;
        if let [only] = resp.unique_identifiers.as_slice() {
            ctx.id_placeholder = Some(only.clone());
        }
        Ok((*resp).clone())
    }
}

/// Whether an object satisfies every Locate filter attribute. The store's index answers a
/// superset of these objects (`store/index.rs` `term`): a change here must keep it one.
pub(super) fn matches_filter(obj: &StoredObject, filter: &[Attribute]) -> bool {
    // Two instances of one date attribute in a filter bound a range; one is an exact match.
    let mut date_ranges: Vec<(Tag, i64, i64)> = Vec::new();
    for f in filter {
        if let (Some(tag), Some(d)) = (f.tag(), f.as_datetime()) {
            match date_ranges.iter_mut().find(|(t, _, _)| *t == tag) {
                Some(r) => {
                    r.1 = r.1.min(d);
                    r.2 = r.2.max(d);
                }
                None => date_ranges.push((tag, d, d)),
            }
            continue;
        }
        let ok = match f.tag() {
            Some(t) if t == tags::NAME => {
                let want = f.as_name();
                obj.all(tags::NAME).any(|x| {
                    x.as_name()
                        .zip(want.as_ref())
                        .is_some_and(|(a, b)| a.value == b.value)
                })
            }
            Some(t) if t == tags::OBJECT_TYPE => {
                obj.enum_of(tags::OBJECT_TYPE) == f.as_enum::<ObjectType>().map(|o| o.to_u32())
                    || Some(object_type_of(obj.kind).to_u32())
                        == f.as_enum::<ObjectType>().map(|o| o.to_u32())
            }
            Some(t) if t == tags::CRYPTOGRAPHIC_USAGE_MASK => {
                let want = f.as_int().unwrap_or(0);
                obj.first(t)
                    .and_then(|a| a.as_int())
                    .is_some_and(|have| have & want == want)
            }
            _ => obj.find(&f.name).any(|x| x.value == f.value),
        };
        if !ok {
            return false;
        }
    }
    date_ranges.iter().all(|(tag, lo, hi)| {
        obj.first(*tag)
            .and_then(|a| a.as_datetime())
            .is_some_and(|d| d >= *lo && d <= *hi)
    })
}
