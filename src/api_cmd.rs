//! `photon api`: what clients in other languages need from this binary, the
//! control plane's Cap'n Proto schemas (the exact texts compiled into it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Write the control plane's Cap'n Proto schemas (.capnp) into a directory.
    Schemas {
        /// Directory to write them to (created if missing; existing schema
        /// files in it are replaced).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(command: ApiCommand) -> anyhow::Result<()> {
    match command {
        ApiCommand::Schemas { out } => {
            for path in write_schemas(&out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes every schema into `dir` (mode 0644) and returns the paths written.
/// The schemas import each other by bare file name, so the set is complete
/// on its own: [`unresolved_imports`] checks that.
pub fn write_schemas(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;

    let missing = unresolved_imports(&photon_schema::SCHEMA_SOURCES);
    if !missing.is_empty() {
        bail!("the built-in schemas import files they do not include: {missing:?}");
    }
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in photon_schema::SCHEMA_SOURCES {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The `import "FILE"` targets of `schemas` that are not themselves among
/// `schemas` (by bare file name), as `(importer, target)`.
fn unresolved_imports(schemas: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for (name, text) in schemas {
        let mut rest = *text;
        while let Some(at) = rest.find("import \"") {
            rest = &rest[at + "import \"".len()..];
            let Some(end) = rest.find('"') else { break };
            let target = &rest[..end];
            let target = target.strip_prefix("./").unwrap_or(target);
            if !schemas.iter().any(|(known, _)| *known == target) {
                missing.push(((*name).to_owned(), target.to_owned()));
            }
            rest = &rest[end..];
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_schemas_import_only_each_other() {
        assert_eq!(
            unresolved_imports(&photon_schema::SCHEMA_SOURCES),
            Vec::<(String, String)>::new()
        );
        // The check itself sees a missing file.
        let broken = [("a.capnp", "using X = import \"b.capnp\".X;")];
        assert_eq!(
            unresolved_imports(&broken),
            vec![("a.capnp".to_owned(), "b.capnp".to_owned())]
        );
    }

    #[test]
    fn writes_every_schema_and_refuses_a_file_as_directory() {
        let root = std::env::temp_dir().join(format!("photon-api-schemas-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let out = root.join("new").join("schemas");
        let written = write_schemas(&out).unwrap();
        assert_eq!(written.len(), photon_schema::SCHEMA_SOURCES.len());
        for (name, text) in photon_schema::SCHEMA_SOURCES {
            assert_eq!(std::fs::read_to_string(out.join(name)).unwrap(), text);
        }
        let file = root.join("file");
        std::fs::write(&file, "x").unwrap();
        let error = write_schemas(&file).unwrap_err().to_string();
        assert!(error.contains("is not a directory"), "{error}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
