//! The data directory: what is in it, how it is created, and how a
//! directory that is not Rapport's (or is damaged) is refused untouched.
//!
//! ```text
//! DIR/                 mode 0700
//!   rapport.json       the profile: format, device id, user name, organisation
//!   device.key         the device's ed25519 secret, 32 bytes, mode 0600
//!   journal/           every signed change and invite, append-only: the
//!                      source of truth the store is rebuilt from
//!   store/             the sled database (rapport-store), rebuildable
//! ```
//!
//! `rapport.json` is written last, so its presence means "initialised".

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rapport_trust::{DeviceId, DeviceKey};

use crate::NodeError;
use crate::env::Environment;

pub const PROFILE_FILE: &str = "rapport.json";
pub const KEY_FILE: &str = "device.key";
pub const STORE_DIR: &str = "store";
pub const JOURNAL_DIR: &str = "journal";
/// Where a store is rebuilt before it replaces `store/`.
pub const REBUILD_DIR: &str = "store.rebuilding";
/// Where the journal of a data directory made before journals existed is
/// written before it becomes `journal/`.
pub const MIGRATE_DIR: &str = "journal.migrating";
const PROFILE_FORMAT: u32 = 1;

/// Who this node's user is. Lives in `rapport.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub format: u32,
    /// Hex of the device's public key.
    pub device: String,
    pub name: Option<String>,
    pub org: Option<String>,
    /// The country phone numbers without `+` are read in (ISO 3166, `DE`):
    /// duplicate detection compares numbers in E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// When this data directory was created, RFC 3339.
    pub created: String,
    /// Set by `rapport relay run`: this node stores and forwards shared
    /// spaces and authors nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay: bool,
    /// The private space's schema statements (`rapport schema`), in the
    /// order they were made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<rapport_model::SchemaEntry>,
    /// The exchange rates reports convert amounts at (`rapport rates`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<crate::reports::Rates>,
    /// Retention rules (`rapport privacy retention`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<crate::retention::RetentionRule>,
}

/// The default data directory: `$XDG_DATA_HOME/rapport` on Linux and the
/// platform's equivalent elsewhere.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("rapport"))
}

/// What a directory holds, as far as Rapport is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum DirState {
    Missing,
    /// Exists with nothing of value in it: empty, or only the leftovers of
    /// an interrupted first start (a key, a store, temporary files, but no
    /// profile, which is written last).
    Empty,
    Rapport,
    Foreign,
}

pub fn inspect(dir: &Path) -> Result<DirState, NodeError> {
    if !dir.exists() {
        return Ok(DirState::Missing);
    }
    if !dir.is_dir() {
        return Ok(DirState::Foreign);
    }
    if dir.join(PROFILE_FILE).is_file() {
        return Ok(DirState::Rapport);
    }
    let leftovers = [
        KEY_FILE,
        "device.key.tmp",
        "rapport.json.tmp",
        STORE_DIR,
        JOURNAL_DIR,
        "journal.lock",
        REBUILD_DIR,
    ];
    for entry in fs::read_dir(dir).map_err(|e| NodeError::io(dir, e))? {
        let entry = entry.map_err(|e| NodeError::io(dir, e))?;
        if !leftovers.iter().any(|l| entry.file_name() == *l) {
            return Ok(DirState::Foreign);
        }
    }
    Ok(DirState::Empty)
}

/// Creates the directory layout with a new device key.
pub fn create(
    dir: &Path,
    name: Option<String>,
    org: Option<String>,
    env: &dyn Environment,
) -> Result<Profile, NodeError> {
    create_private_dir(dir)?;
    let mut secret = [0u8; 32];
    env.fill(&mut secret)?;
    let key = DeviceKey::from_secret(secret);
    write_atomically(dir, KEY_FILE, &key.secret(), true)?;
    let profile = Profile {
        format: PROFILE_FORMAT,
        device: key.device_id().to_string(),
        name,
        org,
        region: None,
        created: env.now().to_string(),
        relay: false,
        schema: Vec::new(),
        rates: None,
        retention: Vec::new(),
    };
    save_profile(dir, &profile)?;
    Ok(profile)
}

pub fn save_profile(dir: &Path, profile: &Profile) -> Result<(), NodeError> {
    let json = serde_json::to_vec_pretty(profile).map_err(|e| NodeError::Damaged {
        path: dir.join(PROFILE_FILE),
        reason: e.to_string(),
    })?;
    write_atomically(dir, PROFILE_FILE, &json, false)
}

/// Loads the profile and the device key, checking that they belong together.
pub fn load(dir: &Path) -> Result<(Profile, DeviceKey), NodeError> {
    let profile_path = dir.join(PROFILE_FILE);
    let bytes = fs::read(&profile_path).map_err(|e| NodeError::io(&profile_path, e))?;
    let profile: Profile = serde_json::from_slice(&bytes).map_err(|e| NodeError::Damaged {
        path: profile_path.clone(),
        reason: e.to_string(),
    })?;
    if profile.format != PROFILE_FORMAT {
        return Err(NodeError::Damaged {
            path: profile_path,
            reason: format!(
                "format {} is not understood by this version (expects {PROFILE_FORMAT}); upgrade Rapport",
                profile.format
            ),
        });
    }
    let key_path = dir.join(KEY_FILE);
    let secret = fs::read(&key_path).map_err(|e| NodeError::io(&key_path, e))?;
    let key = DeviceKey::from_secret_slice(&secret).map_err(|e| NodeError::Damaged {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    if key.device_id().to_string() != profile.device {
        return Err(NodeError::Damaged {
            path: key_path,
            reason: format!(
                "the key is for device {}, but the profile names device {}",
                key.device_id().short(),
                &profile.device[..profile.device.len().min(12)]
            ),
        });
    }
    Ok((profile, key))
}

pub fn device_id(profile: &Profile) -> Option<DeviceId> {
    let bytes = rapport_proto::parse_hex(&profile.device)?;
    Some(DeviceId(bytes.try_into().ok()?))
}

pub fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| NodeError::io(dir, e))?;
    }
    Ok(())
}

/// The files in `dir` whose name ends in `.ext` (none when `dir` does not
/// exist yet), in no particular order.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, NodeError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| NodeError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Writes `name` in `dir` via a temporary file, fsync and rename, so that a
/// crash leaves either the old file or the new one, never half of one.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    secret: bool,
) -> Result<(), NodeError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let _ = secret;
    let mut f = options.open(&tmp).map_err(|e| NodeError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| NodeError::io(&tmp, e))?;
    f.sync_all().map_err(|e| NodeError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| NodeError::io(&path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_dir_loads_and_keeps_its_key_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        assert_eq!(inspect(&dir).expect("inspect"), DirState::Missing);
        let profile = create(&dir, Some("Ann".into()), None, &crate::env::System).expect("create");
        assert_eq!(inspect(&dir).expect("inspect"), DirState::Rapport);
        let (loaded, key) = load(&dir).expect("load");
        assert_eq!(loaded, profile);
        assert_eq!(key.device_id().to_string(), profile.device);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn foreign_and_damaged_dirs_are_recognised() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("notes.txt"), "mine").expect("write");
        assert_eq!(inspect(tmp.path()).expect("inspect"), DirState::Foreign);

        let tmp = tempfile::tempdir().expect("tempdir");
        create(tmp.path(), None, None, &crate::env::System).expect("create");
        fs::write(tmp.path().join(KEY_FILE), [0u8; 5]).expect("write");
        let err = load(tmp.path()).expect_err("damaged key");
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }
}
