//! `timedeal-operator check`: client-side validation of TimeDeal files.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use timedeal_api::validation;

/// Checks every file and prints one line per file (and one per broken rule), so a directory of
/// deals can be checked in one go.
pub fn run(paths: &[PathBuf]) -> ExitCode {
    let mut files = Vec::new();
    for path in paths {
        if let Err(message) = collect(path, &mut files) {
            eprintln!("{}: {message}", path.display());
            return ExitCode::from(2);
        }
    }
    let (mut checked, mut invalid) = (0, 0);
    for file in &files {
        let documents = match fs::read_to_string(file) {
            Ok(text) => validation::parse_all(&text),
            Err(e) => {
                eprintln!("{}: cannot read: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let many = documents.len() > 1;
        for (index, document) in documents.into_iter().enumerate() {
            checked += 1;
            let place = if many {
                format!("{} (document {})", file.display(), index + 1)
            } else {
                file.display().to_string()
            };
            match document {
                Ok(deal) => println!(
                    "{place}: valid TimeDeal {}",
                    deal.metadata.name.unwrap_or_default()
                ),
                Err(error) => {
                    invalid += 1;
                    println!("{place}: invalid");
                    for line in error.to_string().lines() {
                        println!("  {line}");
                    }
                }
            }
        }
    }
    if invalid == 0 {
        println!("{checked} TimeDeal(s) checked, all valid");
        ExitCode::SUCCESS
    } else {
        println!("{checked} TimeDeal(s) checked, {invalid} invalid");
        ExitCode::FAILURE
    }
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| format!("cannot list: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    entries.sort();
    files.extend(entries);
    Ok(())
}
