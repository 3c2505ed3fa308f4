//! Secrets a process needs at start: the admin key and the key-hashing secret. In `all` mode a
//! missing one is generated once into a 0600 file in the data directory, so the one-command quick
//! start works; every other mode must be given them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secrecy::SecretString;

/// File (in the data directory) holding the generated admin key.
pub(crate) const ADMIN_KEY_FILE: &str = "admin_api_key";
/// File (in the data directory) holding the generated key-hash secret.
pub(crate) const HASH_SECRET_FILE: &str = "key_hash_secret";

/// The configured secret, or in `all` mode the one stored in (or generated into) `file`.
pub(crate) fn load_or_generate(
    configured: Option<&SecretString>,
    data_dir: &Path,
    file: &str,
    prefix: &str,
    generate: bool,
    setting: &str,
) -> anyhow::Result<(SecretString, Option<std::path::PathBuf>)> {
    if let Some(secret) = configured {
        return Ok((secret.clone(), None));
    }
    anyhow::ensure!(generate, "`{setting}` is required in this mode (see docs/configuration.md)");
    let path = data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok((SecretString::from(existing.to_owned()), Some(path)));
        }
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let secret = flowgate_common::keys::random_secret(prefix).context("generating a secret")?;
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok((secret, Some(path)))
}

fn write_private(path: &Path, secret: &SecretString) -> std::io::Result<()> {
    use secrecy::ExposeSecret;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(secret.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
