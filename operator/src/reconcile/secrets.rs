//! The deal's secret values: the platform PostgreSQL URL, what the deal's Secrets already hold,
//! and what is generated when they hold nothing yet.

use super::*;

/// The platform PostgreSQL URL, from the Secret named in the operator's flags.
pub(super) async fn platform_url(ctx: &Context) -> Result<String> {
    let config = &ctx.config;
    let platform: Api<Secret> = Api::namespaced(ctx.client.clone(), &config.operator_namespace);
    let missing = |problem| Error::PostgresSecret {
        namespace: config.operator_namespace.clone(),
        name: config.postgres_secret.clone(),
        key: config.postgres_secret_key.clone(),
        problem,
    };
    let postgres = bounded(config.api_timeout, async {
        platform
            .get_opt(&config.postgres_secret)
            .await
            .map_err(kube(format!(
                "reading Secret {}/{}",
                config.operator_namespace, config.postgres_secret
            )))
    })
    .await?
    .ok_or_else(|| missing("does not exist"))?;
    let postgres_url = secret_value(&postgres, &config.postgres_secret_key)
        .ok_or_else(|| missing("has no such key, or its value is empty or not UTF-8"))?;
    Ok(postgres_url)
}

/// One key of a Secret in the operator's namespace; none when the Secret or key is missing.
async fn operator_secret(ctx: &Context, name: &str, key: &str) -> Result<Option<String>> {
    let config = &ctx.config;
    let own: Api<Secret> = Api::namespaced(ctx.client.clone(), &config.operator_namespace);
    let secret = bounded(config.api_timeout, async {
        own.get_opt(name).await.map_err(kube(format!(
            "reading Secret {}/{name}",
            config.operator_namespace
        )))
    })
    .await?;
    Ok(secret.and_then(|secret| secret_value(&secret, key)))
}

/// The deal's own Secrets as read: the one kind of child the operator may not watch.
#[derive(Default)]
pub(super) struct LiveSecrets {
    pub(super) redis: Option<Secret>,
    pub(super) storefront: Option<Secret>,
    /// The platform PostgreSQL URL they were read beside.
    pub(super) platform: String,
}

/// The deal's secret values: read back from its Secrets when they exist, generated otherwise, so
/// a password or signing key never changes under a running storefront.
pub(super) async fn secrets(ctx: &Context, deal: &Deal<'_>) -> Result<(Secrets, LiveSecrets)> {
    let config = &ctx.config;
    let postgres_url = platform_url(ctx).await?;

    let own: Api<Secret> = Api::namespaced(ctx.client.clone(), deal.namespace);
    let existing = |name: String| {
        let own = own.clone();
        bounded(config.api_timeout, async move {
            own.get_opt(&name)
                .await
                .map_err(kube(format!("reading Secret {}/{name}", deal.namespace)))
        })
    };
    // The shoppers' JWT key, when the deal names one: its content goes into the storefront's
    // checksum, so rotating it rolls the pods that read it at start.
    let jwt_secret = deal
        .td
        .spec
        .shopper_auth
        .as_ref()
        .and_then(|auth| auth.jwt.as_ref())
        .and_then(|jwt| jwt.key_secret_ref.as_ref());
    let jwt_key_fingerprint = match jwt_secret {
        Some(reference) => existing(reference.name.clone())
            .await?
            .and_then(|secret| secret.data)
            .and_then(|data| data.get(&reference.key).cloned())
            .map(|value| resources::fingerprint(&serde_json::json!(value))),
        None => None,
    };
    let live = LiveSecrets {
        redis: existing(resources::redis::secret_name(deal)).await?,
        storefront: existing(resources::storefront::secret_name(deal)).await?,
        platform: postgres_url.clone(),
    };
    let redis_password = live
        .redis
        .as_ref()
        .and_then(|s| secret_value(s, resources::redis::PASSWORD_KEY))
        .unwrap_or_else(|| generate(32));
    let stored = |key| live.storefront.as_ref().and_then(|s| secret_value(s, key));
    let signing_secret = stored(resources::storefront::SIGNING_KEY).unwrap_or_else(|| generate(48));
    let control_key = stored(resources::storefront::CONTROL_KEY).unwrap_or_else(|| generate(48));
    // Quoted into SQL as the role's password: only one this operator could have made is kept.
    let postgres_password = stored(resources::storefront::POSTGRES_PASSWORD_KEY)
        .filter(|p| p.len() >= 32 && p.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| generate(32));
    let role = deal.schema();
    let uid = deal.td.uid().unwrap_or_default();
    let setup = resources::fingerprint(&serde_json::json!([postgres_url, postgres_password, role]));
    if !ctx.ensured.contains(&uid, &setup) {
        // Boxed: a rare step (once per deal and restart), kept off every reconcile's stack.
        let ensure = Box::pin(ctx.database.ensure_tenant(
            &postgres_url,
            &role,
            &postgres_password,
            database::Owner {
                uid: &uid,
                namespace: deal.namespace,
                name: deal.name,
            },
        ));
        match ensure.await {
            Ok(()) => ctx.ensured.insert(&uid, &setup),
            // Never another deal's role: that is the deal's problem to show, not to work around.
            Err(error @ database::DatabaseError::Taken { .. }) => {
                return Err(Error::Database(error))
            }
            // A running deal keeps the credentials it has; a new one cannot start without them.
            Err(error) if stored("postgres-url").is_some() => {
                warn!(deal = %deal.name, %error, "cannot set up the deal's PostgreSQL role; keeping its credentials");
            }
            Err(error) => return Err(Error::Database(error)),
        }
    }
    let tenant_url =
        database::tenant_url(&postgres_url, &role, &postgres_password).map_err(Error::Database)?;
    // The platform's SMTP server, when it has one. A Secret that cannot be read now leaves a
    // running deal the URL it has, so a deleted Secret never rolls a sale's pods.
    let smtp_url = match &config.settings.mail {
        Some(mail) => match operator_secret(ctx, &mail.secret, &mail.key).await {
            Ok(Some(url)) => Some(url),
            outcome => {
                let problem = match outcome {
                    Err(error) => error.to_string(),
                    _ => format!(
                        "Secret {}/{} has no key {:?} (or it is empty)",
                        config.operator_namespace, mail.secret, mail.key
                    ),
                };
                warn!(deal = %deal.name, %problem, "cannot read the SMTP URL; email reminders keep what the deal had");
                stored(resources::storefront::SMTP_URL_KEY)
            }
        },
        None => None,
    };
    let secrets = Secrets {
        redis_password,
        signing_secret,
        control_key,
        postgres_url: tenant_url,
        postgres_password,
        jwt_key_fingerprint,
        smtp_url,
    };
    Ok((secrets, live))
}

pub(super) fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|v| !v.is_empty())
}

/// A random secret of letters and digits (URL-safe, so it fits in a Redis URL as is).
pub(super) fn generate(length: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generate(48), generate(48));
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
