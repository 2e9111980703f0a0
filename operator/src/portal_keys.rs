//! The Secret `timedeal-portal` in the operator's namespace: the key the rental portal signs its
//! session cookies with. The operator makes it, generated, on its first start; the portal's pod
//! reads it through its environment (the kubelet does), so the portal itself needs no right on
//! Secrets. The value is never logged.

use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::{
    api::{Api, ObjectMeta, PostParams},
    Client,
};
use rand::{distributions::Alphanumeric, Rng};
use tracing::info;

/// The Secret and its key.
pub const SECRET: &str = "timedeal-portal";
pub const SESSION_KEY: &str = "session-key";

/// Makes the Secret unless it exists with a key. Two replicas racing both end with the one
/// that was stored first.
pub async fn ensure(client: &Client, namespace: &str) -> Result<(), String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("the Secret {namespace}/{SECRET}");
    match secrets.get_opt(SECRET).await {
        Ok(Some(secret)) => {
            let present = secret
                .data
                .as_ref()
                .is_some_and(|d| d.get(SESSION_KEY).is_some_and(|v| v.0.len() >= 32));
            if present {
                Ok(())
            } else {
                Err(format!(
                    "{what} has no `{SESSION_KEY}` of 32 bytes or more; delete it and the operator makes a new one"
                ))
            }
        }
        Ok(None) => {
            let key: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(64)
                .map(char::from)
                .collect();
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(SECRET.into()),
                    namespace: Some(namespace.into()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "timedeal-operator".to_owned(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                data: Some([(SESSION_KEY.to_owned(), ByteString(key.into_bytes()))].into()),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    info!(secret = %what, "generated the portal's session key");
                    Ok(())
                }
                // Another replica made it first.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(format!("cannot create {what}: {e}")),
            }
        }
        Err(e) => Err(format!("cannot read {what}: {e}")),
    }
}
