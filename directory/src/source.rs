//! Where the deals come from: the cluster's TimeDeals, or a folder of TimeDeal files (YAML or
//! JSON, several documents per file allowed) read again whenever one changes, so the directory
//! runs without a cluster. A deal that cannot be read (a document breaking the CRD's rules, an
//! object an older release wrote) is logged and left out; the others are still listed.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use kube::{api::ListParams, core::DeserializeGuard, Api};
use timedeal_api::TimeDeal;
use tokio::sync::watch;

use crate::Error;

/// The deals as last read.
pub type Deals = Arc<Vec<TimeDeal>>;

/// Reads every `.yaml`, `.yml` and `.json` file of `folder` (not its subfolders).
pub fn read_folder(folder: &Path) -> Result<Vec<TimeDeal>, Error> {
    let mut deals = Vec::new();
    for path in files(folder)? {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Source {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for (index, parsed) in timedeal_api::validation::parse_all(&text)
            .into_iter()
            .enumerate()
        {
            match parsed {
                Ok(deal) => deals.push(deal),
                Err(error) => tracing::warn!(
                    file = %path.display(),
                    document = index + 1,
                    %error,
                    "not a valid TimeDeal; left out of the directory"
                ),
            }
        }
    }
    Ok(deals)
}

fn files(folder: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::Source {
        path: folder.to_owned(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The newest modification time and the number of files, which change when a file is edited,
/// added or removed.
fn fingerprint(folder: &Path) -> Option<(SystemTime, usize)> {
    let files = files(folder).ok()?;
    let newest = files
        .iter()
        .filter_map(|path| path.metadata().and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some((newest, files.len()))
}

/// Reads the folder now, then again every `every` when it changed.
pub fn follow_folder(folder: PathBuf, every: Duration) -> Result<watch::Receiver<Deals>, Error> {
    let (tx, rx) = watch::channel(Arc::new(read_folder(&folder)?));
    tokio::spawn(async move {
        let mut seen = fingerprint(&folder);
        loop {
            tokio::time::sleep(every).await;
            let now = fingerprint(&folder);
            if now == seen {
                continue;
            }
            seen = now;
            match read_folder(&folder) {
                Ok(deals) => {
                    tracing::info!(deals = deals.len(), "deal files read again");
                    if tx.send(Arc::new(deals)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the deal files; keeping the last ones")
                }
            }
        }
    });
    Ok(rx)
}

/// The longest one listing of the cluster's TimeDeals may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists every TimeDeal in the cluster now, then again every `every`. Each listing is one small
/// request the API server answers from its cache (`resourceVersion=0`), the same whatever the
/// number of shoppers; a failed one keeps the last listing, so the page stays up through an API
/// server's restart. The first must succeed: a directory that cannot see deals says why at once
/// (say, its ServiceAccount may not list TimeDeals).
pub async fn follow_cluster(
    client: kube::Client,
    every: Duration,
) -> Result<watch::Receiver<Deals>, Error> {
    let api: Api<DeserializeGuard<TimeDeal>> = Api::all(client);
    let (tx, rx) = watch::channel(Arc::new(list_cluster(&api).await?));
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            match list_cluster(&api).await {
                Ok(deals) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(deals = deals.len(), "the TimeDeals can be listed again");
                    }
                    if tx.send(Arc::new(deals)).is_err() {
                        return;
                    }
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot list the TimeDeals; keeping the last listing");
                }
                Err(_) => {}
            }
        }
    });
    Ok(rx)
}

async fn list_cluster(api: &Api<DeserializeGuard<TimeDeal>>) -> Result<Vec<TimeDeal>, Error> {
    let listed = tokio::time::timeout(LIST_TIMEOUT, api.list(&ListParams::default().match_any()))
        .await
        .map_err(|_| Error::Cluster(format!("no answer within {} s", LIST_TIMEOUT.as_secs())))?
        .map_err(|e| Error::Cluster(e.to_string()))?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|guard| match guard.0 {
            Ok(deal) => Some(deal),
            Err(error) => {
                tracing::warn!(%error, "a TimeDeal that cannot be read; left out of the directory");
                None
            }
        })
        .collect())
}
