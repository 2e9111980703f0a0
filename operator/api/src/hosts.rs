//! Which storefront hosts a company's deals may take. A host is a company's when it falls under
//! the suffix the platform gives every company (`<company>.<suffix>` and anything under it) or
//! under a host an admin listed on the Company; it is never the portal's or the directory's, and
//! never a host another deal holds. The portal checks this when a deal is requested, the
//! operator when it is approved and before it is built.

use kube::ResourceExt;

use crate::{Company, Phase, TimeDeal};

/// What the platform keeps for itself and hands to companies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRules {
    /// Every company gets `<company>.<suffix>` and the hosts under it; none: only listed hosts.
    pub company_suffix: Option<String>,
    /// Hosts no deal may take: the portal's and the directory's.
    pub reserved: Vec<String>,
}

/// A company host suffix as given on a command line: a lower-case DNS name such as
/// deals.example.com, or nothing.
pub fn parse_suffix(text: &str) -> Result<String, String> {
    let valid = text.is_empty()
        || (text.len() <= 200 && text.split('.').all(crate::is_dns_label) && text.contains('.'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a lower-case DNS name such as deals.example.com"
        ))
    }
}

/// Whether `host` is `pattern`, or falls under it when it is `*.domain` (any host ending in
/// `.domain`).
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => pattern == host,
    }
}

impl HostRules {
    /// The rules from command-line flags: an empty suffix is none, reserved hosts are
    /// lowercased and empty ones dropped.
    pub fn from_flags(company_suffix: String, reserved: Vec<String>) -> Self {
        Self {
            company_suffix: Some(company_suffix).filter(|s| !s.is_empty()),
            reserved: reserved
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// The hosts `company`'s deals may take, as patterns.
    pub fn allowed(&self, company: &Company) -> Vec<String> {
        let mut allowed = Vec::new();
        if let Some(suffix) = self.company_suffix.as_deref().filter(|s| !s.is_empty()) {
            let own = format!("{}.{suffix}", company.name_any());
            allowed.push(format!("*.{own}"));
            allowed.push(own);
        }
        allowed.extend(company.spec.hosts.iter().cloned());
        allowed
    }

    /// Why `td` may not take its host as a deal of `company`, if it may not. `deals` are the
    /// other deals there are (any namespace); only approved ones hold a host (two requests may
    /// ask for one; the first approved gets it), and one of the same company that has ended
    /// leaves its host to a later deal.
    pub fn problem<'a>(
        &self,
        td: &TimeDeal,
        company: &Company,
        deals: impl IntoIterator<Item = &'a TimeDeal>,
    ) -> Option<String> {
        let host = td.spec.ingress.host.to_ascii_lowercase();
        if self.reserved.iter().any(|r| r.eq_ignore_ascii_case(&host)) {
            return Some(format!(
                "ingress.host {host} is the platform's own (the portal's or the directory's); \
                 choose a host of the company's own"
            ));
        }
        let allowed = self.allowed(company);
        if !allowed.iter().any(|pattern| matches(pattern, &host)) {
            return Some(if allowed.is_empty() {
                format!(
                    "ingress.host {host} is not the company's: the Company {} has no hosts \
                     (an admin lists them in spec.hosts, or gives every company a host suffix)",
                    company.name_any()
                )
            } else {
                format!(
                    "ingress.host {host} is not the company's: use a host under {}",
                    allowed.join(" or ")
                )
            });
        }
        let namespace = td
            .namespace()
            .unwrap_or_else(|| company.spec.namespace.clone());
        let holder = deals.into_iter().find(|other| {
            other.spec.approved
                && other.uid() != td.uid()
                && other.spec.ingress.host.eq_ignore_ascii_case(&host)
                && !(other.namespace().as_deref() == Some(namespace.as_str())
                    && other
                        .status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(|p| p == Phase::Ended))
        });
        holder.map(|other| {
            if other.namespace().as_deref() == Some(namespace.as_str()) {
                format!(
                    "ingress.host {host} is taken by the deal {}, which has not ended; choose \
                     another host or wait for its end",
                    other.name_any()
                )
            } else {
                format!("ingress.host {host} is another company's deal's; choose another host")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company(name: &str, hosts: &[&str]) -> Company {
        let mut company: Company =
            serde_yaml::from_str(include_str!("../../../manifests/companies/acme-audio.yaml"))
                .unwrap();
        company.metadata.name = Some(name.into());
        company.spec.hosts = hosts.iter().map(|h| h.to_string()).collect();
        company
    }

    fn deal(namespace: &str, uid: &str, host: &str, phase: Option<Phase>) -> TimeDeal {
        let mut td: TimeDeal = serde_yaml::from_str(include_str!(
            "../../../manifests/samples/timedeal-minimal.yaml"
        ))
        .unwrap();
        td.metadata.namespace = Some(namespace.into());
        td.metadata.uid = Some(uid.into());
        td.spec.ingress.host = host.into();
        td.spec.approved = true;
        td.status = phase.map(|phase| crate::TimeDealStatus {
            phase: Some(phase),
            ..Default::default()
        });
        td
    }

    #[test]
    fn wildcards_cover_the_hosts_under_a_domain_only() {
        assert!(matches("*.acme.example", "sale.acme.example"));
        assert!(matches("*.acme.example", "a.b.acme.example"));
        assert!(!matches("*.acme.example", "acme.example"));
        assert!(!matches("*.acme.example", "evilacme.example"));
        assert!(matches("shop.acme.example", "shop.acme.example"));
        assert!(!matches("shop.acme.example", "x.shop.acme.example"));
    }

    #[test]
    fn a_host_belongs_to_its_company_and_to_one_live_deal() {
        let rules = HostRules {
            company_suffix: Some("deals.example.com".into()),
            reserved: vec!["deals.example.com".into(), "directory.example.com".into()],
        };
        let acme = company("acme", &["shop.acme-audio.example"]);
        let ours = |host: &str| deal("acme", "uid-1", host, None);
        assert_eq!(
            rules.problem(&ours("acme.deals.example.com"), &acme, []),
            None
        );
        assert_eq!(
            rules.problem(&ours("winter.acme.deals.example.com"), &acme, []),
            None
        );
        assert_eq!(
            rules.problem(&ours("shop.acme-audio.example"), &acme, []),
            None
        );
        for (host, says) in [
            ("deals.example.com", "platform's own"),
            ("Directory.Example.com", "platform's own"),
            (
                "bolt.deals.example.com",
                "use a host under *.acme.deals.example.com",
            ),
            ("sale.bolt.deals.example.com", "is not the company's"),
        ] {
            let problem = rules.problem(&ours(host), &acme, []).unwrap();
            assert!(problem.contains(says), "{host}: {problem}");
        }
        let bare = HostRules::default();
        let problem = bare
            .problem(&ours("x.acme.example"), &company("acme", &[]), [])
            .unwrap();
        assert!(problem.contains("has no hosts"), "{problem}");

        // Another company's deal on the host: refused. The company's own ended deal: fine.
        let host = "shop.acme-audio.example";
        let theirs = deal("bolt", "uid-2", host, Some(Phase::Ended));
        assert!(rules
            .problem(&ours(host), &acme, [&theirs])
            .unwrap()
            .contains("another company"));
        let ended = deal("acme", "uid-3", host, Some(Phase::Ended));
        assert_eq!(rules.problem(&ours(host), &acme, [&ended]), None);
        let live = deal("acme", "uid-3", host, Some(Phase::Live));
        assert!(rules
            .problem(&ours(host), &acme, [&live])
            .unwrap()
            .contains("not ended"));
        assert_eq!(
            rules.problem(&ours(host), &acme, [&ours(host)]),
            None,
            "itself"
        );
        let mut pending = deal("bolt", "uid-4", host, None);
        pending.spec.approved = false;
        assert_eq!(
            rules.problem(&ours(host), &acme, [&pending]),
            None,
            "a request holds nothing"
        );
    }
}
