//! Server-side apply of children, skipped when the child already is as desired, so a reconcile
//! that finds nothing to change writes nothing. What the child is now comes from the caller: the
//! controller's watch cache, or a read.
//!
//! "As desired" is two checks: the child carries the hash of the object last applied (catching
//! fields the operator stopped setting, which a comparison alone cannot see), and every field the
//! operator sets still has its value (catching hand edits). Fields the API server adds are ignored.

use std::fmt::Debug;

use kube::{
    api::{Api, DeleteParams, Patch, PatchParams},
    Client, Resource,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::error::{kube, Result};

/// The one field manager every child is applied under.
pub const FIELD_MANAGER: &str = "timedeal-operator";

/// The annotation holding the hash of the object as last applied.
pub const HASH_ANNOTATION: &str = "timedeal.dev/applied-hash";

/// What applying one child did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Written,
}

/// Applies `desired` unless `live` (the object as last read or watched) already matches it.
pub async fn apply<K>(client: &Client, mut desired: K, live: Option<&K>) -> Result<Applied>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let namespace = desired.meta().namespace.clone().unwrap_or_default();
    let what = format!("{} {namespace}/{name}", K::kind(&()));
    let hash = hash(&serde_json::to_value(&desired).expect("k8s objects serialise"));
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(HASH_ANNOTATION.into(), hash.clone());

    if let Some(live) = live {
        let live_hash = live
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH_ANNOTATION));
        let live = serde_json::to_value(live).expect("k8s objects serialise");
        let wanted = serde_json::to_value(&desired).expect("k8s objects serialise");
        if live_hash == Some(&hash) && covers(&live, &wanted) {
            return Ok(Applied::Unchanged);
        }
    }
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(kube(format!("applying {what}")))?;
    Ok(Applied::Written)
}

/// Deletes a child that should no longer exist, if it does (`exists`: as last read or watched).
pub async fn remove<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    exists: bool,
) -> Result<Applied>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    if !exists {
        return Ok(Applied::Unchanged);
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let what = format!("{} {namespace}/{name}", K::kind(&()));
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(Applied::Written),
        // Gone meanwhile: as wanted.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Applied::Unchanged),
        Err(e) => Err(kube(format!("deleting {what}"))(e)),
    }
}

/// Whether every value set in `wanted` has the same value in `live`. Lists are compared item by
/// item and must have the same length; fields only `live` has are ignored. An empty list or map
/// in `wanted` matches an absent field: the API server drops them (Go's `omitempty`), so
/// `egress: []` is read back as no `egress` at all.
pub fn covers(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => {
            wanted.iter().all(|(key, value)| match live.get(key) {
                Some(live_value) => covers(live_value, value),
                None => is_empty(value),
            })
        }
        (Value::Array(live), Value::Array(wanted)) => {
            live.len() == wanted.len() && live.iter().zip(wanted).all(|(l, w)| covers(l, w))
        }
        (live, wanted) => live == wanted,
    }
}

/// An empty list or map, or null: what the API server stores as absent.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// A fingerprint of the object's JSON.
pub fn hash(object: &Value) -> String {
    crate::resources::fingerprint(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_added_by_the_server_do_not_count_as_a_change() {
        let wanted =
            json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}});
        let live = json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "terminationMessagePath": "/dev/termination-log"}], "dnsPolicy": "ClusterFirst"},
            "status": {"replicas": 2}});
        assert!(covers(&live, &wanted));
    }

    #[test]
    fn an_edited_or_missing_value_counts_as_a_change() {
        let wanted = json!({"spec": {"minReplicas": 6, "metrics": [{"type": "Resource"}]}});
        assert!(!covers(
            &json!({"spec": {"minReplicas": 2, "metrics": [{"type": "Resource"}]}}),
            &wanted
        ));
        assert!(!covers(
            &json!({"spec": {"metrics": [{"type": "Resource"}]}}),
            &wanted
        ));
        assert!(!covers(
            &json!({"spec": {"minReplicas": 6, "metrics": []}}),
            &wanted
        ));
        assert!(!covers(
            &json!({"spec": {"minReplicas": 6, "metrics": [{"type": "Resource"}, {"type": "Pods"}]}}),
            &wanted
        ));
    }

    #[test]
    fn an_empty_list_or_map_matches_an_absent_field() {
        let wanted = json!({"spec": {"policyTypes": ["Egress"], "egress": [], "podSelector": {}}});
        assert!(covers(
            &json!({"spec": {"policyTypes": ["Egress"], "podSelector": {}}}),
            &wanted
        ));
        assert!(!covers(
            &json!({"spec": {"policyTypes": ["Egress"], "egress": [{}], "podSelector": {}}}),
            &wanted
        ));
        assert!(!covers(
            &json!({"spec": {}}),
            &json!({"spec": {"egress": [{}]}})
        ));
    }

    #[test]
    fn the_hash_follows_the_content() {
        let a = hash(&json!({"spec": {"replicas": 1}}));
        assert_eq!(a, hash(&json!({"spec": {"replicas": 1}})));
        assert_ne!(a, hash(&json!({"spec": {}})));
        assert_eq!(a.len(), 16);
    }
}
