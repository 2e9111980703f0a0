//! Where a deal's data lives in the platform PostgreSQL: one schema per deal, named here so the
//! operator (which makes it), the storefront (which fills it) and the portal (which exports its
//! orders) agree.

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// `td_<namespace>_<name>` in lowercase letters, digits and underscores; names too long for
/// PostgreSQL's 63 characters are shortened and keep a hash of the full name, so two deals never
/// share a schema.
pub fn schema_name(namespace: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let full = format!("td_{}_{}", clean(namespace), clean(name));
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = fnv1a(format!("{namespace}/{name}").as_bytes());
    format!("{}_{:012x}", &full[..50], hash & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_unique_and_valid() {
        assert_eq!(
            schema_name("acme-audio", "winter-headphones"),
            "td_acme_audio_winter_headphones"
        );
        let long = schema_name(&"n".repeat(60), &"d".repeat(60));
        assert_eq!(long.len(), 63);
        assert_ne!(long, schema_name(&"n".repeat(60), &"d".repeat(61)));
    }
}
