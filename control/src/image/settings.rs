//! The values a board's first-boot files carry, checked before anything is written: host and
//! user names, the time zone, the Wi-Fi network (its WPA key derived here), and the quoting
//! that puts them into a shell script or a YAML file safely. All pure.

use std::path::Path;

/// A value `lab image prepare` refuses, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSetting {
    #[error("host name `{0}`: use 1 to 63 of a-z, 0-9 and `-`, not starting or ending with `-`")]
    Hostname(String),
    #[error(
        "login user `{0}`: use 1 to 32 of a-z, 0-9, `_` and `-`, starting with a letter or `_`"
    )]
    User(String),
    #[error("time zone `{0}`: expected an Area/City name such as Europe/Berlin or UTC")]
    TimezoneShape(String),
    #[error("time zone `{zone}`: not in {dir} on this machine (see `timedatectl list-timezones`)")]
    TimezoneUnknown { zone: String, dir: String },
    #[error("Wi-Fi SSID {0:?}: 1 to 32 bytes without control characters, `\"`, `\\` or `;`, and no space at either end")]
    Ssid(String),
    #[error("Wi-Fi passphrase from {file}: {why}")]
    Passphrase { file: String, why: &'static str },
}

/// A host name: one RFC 1123 label.
pub fn check_hostname(name: &str) -> Result<(), BadSetting> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    ok.then_some(())
        .ok_or_else(|| BadSetting::Hostname(name.to_string()))
}

/// A login name Debian's `useradd` takes without `--badname`.
pub fn check_user(name: &str) -> Result<(), BadSetting> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let ok = first_ok
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    ok.then_some(())
        .ok_or_else(|| BadSetting::User(name.to_string()))
}

/// A tz database name: `UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`. When this
/// machine has a zoneinfo directory (`zoneinfo`), the zone must be in it.
pub fn check_timezone(zone: &str, zoneinfo: &Path) -> Result<(), BadSetting> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
    };
    if zone.len() > 64 || !zone.split('/').all(part_ok) {
        return Err(BadSetting::TimezoneShape(zone.to_string()));
    }
    if zoneinfo.is_dir() && !zoneinfo.join(zone).is_file() {
        return Err(BadSetting::TimezoneUnknown {
            zone: zone.to_string(),
            dir: zoneinfo.display().to_string(),
        });
    }
    Ok(())
}

/// A Wi-Fi network: its name and the WPA passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct Wifi {
    pub ssid: String,
    pub passphrase: String,
}

impl std::fmt::Debug for Wifi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wifi")
            .field("ssid", &self.ssid)
            .field("passphrase", &"(hidden)")
            .finish()
    }
}

impl Wifi {
    /// `file_text` is the passphrase file's content (`file` names it in errors); one
    /// trailing newline is not part of the passphrase.
    pub fn new(ssid: &str, file_text: &str, file: &str) -> Result<Wifi, BadSetting> {
        let ssid_ok = (1..=32).contains(&ssid.len())
            && !ssid
                .chars()
                .any(|c| c.is_control() || matches!(c, '"' | '\\' | ';'))
            && ssid.trim() == ssid;
        if !ssid_ok {
            return Err(BadSetting::Ssid(ssid.to_string()));
        }
        let passphrase = file_text
            .strip_suffix('\n')
            .map(|p| p.strip_suffix('\r').unwrap_or(p))
            .unwrap_or(file_text);
        let bad = |why| BadSetting::Passphrase {
            file: file.to_string(),
            why,
        };
        if passphrase.contains('\n') {
            return Err(bad("more than one line"));
        }
        if !(8..=63).contains(&passphrase.len()) {
            return Err(bad("a WPA passphrase is 8 to 63 characters"));
        }
        if !passphrase.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad("a WPA passphrase is printable ASCII"));
        }
        Ok(Wifi {
            ssid: ssid.to_string(),
            passphrase: passphrase.to_string(),
        })
    }

    /// The WPA pre-shared key (IEEE 802.11i: PBKDF2-HMAC-SHA1 of the passphrase, salted
    /// with the SSID, 4096 rounds, 32 bytes) in hex, as wpa_supplicant and NetworkManager
    /// take it: the passphrase itself never lands on the board.
    pub fn psk_hex(&self) -> String {
        let mut key = [0u8; 32];
        let rounds = std::num::NonZeroU32::new(4096).unwrap_or(std::num::NonZeroU32::MIN);
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA1,
            rounds,
            self.ssid.as_bytes(),
            self.passphrase.as_bytes(),
            &mut key,
        );
        hex::encode(key)
    }
}

/// `value` as one shell word: single quotes, each `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `value` as a YAML double-quoted scalar (the values reaching here have no control
/// characters).
pub fn yaml_quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', r"\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_user_names() {
        assert!(check_hostname("pi-3").is_ok());
        assert!(check_hostname("Pi_3").is_err());
        assert!(check_hostname("-pi").is_err());
        assert!(check_user("pi").is_ok());
        assert!(check_user("_lab-1").is_ok());
        assert!(check_user("3pi").is_err());
        assert!(check_user("pi;rm").is_err());
    }

    #[test]
    fn time_zones_by_shape_and_by_this_machines_zoneinfo() {
        let nowhere = Path::new("/nonexistent/zoneinfo");
        assert!(check_timezone("Europe/Berlin", nowhere).is_ok());
        assert!(check_timezone("UTC", nowhere).is_ok());
        for bad in [
            "",
            "Europe/../etc/passwd",
            "/etc/passwd",
            "Europe Berlin",
            "a//b",
        ] {
            assert_eq!(
                check_timezone(bad, nowhere),
                Err(BadSetting::TimezoneShape(bad.to_string())),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("Europe")).expect("dir");
        std::fs::write(dir.path().join("Europe/Berlin"), "TZif").expect("zone");
        assert!(check_timezone("Europe/Berlin", dir.path()).is_ok());
        let unknown = check_timezone("Mars/Olympus_Mons", dir.path());
        assert!(
            matches!(unknown, Err(BadSetting::TimezoneUnknown { ref zone, .. }) if zone == "Mars/Olympus_Mons"),
            "{unknown:?}"
        );
    }

    #[test]
    fn wifi_passphrases_and_the_derived_key() {
        // IEEE 802.11i-2004, Annex H.4, test vector 1.
        let wifi = Wifi::new("IEEE", "password\n", "psk").expect("valid");
        assert_eq!(wifi.passphrase, "password");
        assert_eq!(
            wifi.psk_hex(),
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        assert!(!format!("{wifi:?}").contains("password"), "hidden in Debug");
        assert!(matches!(
            Wifi::new("home", "short\n", "psk"),
            Err(BadSetting::Passphrase { .. })
        ));
        assert!(Wifi::new("home", "two\nlines-here\n", "psk").is_err());
        assert!(Wifi::new("", "password1", "psk").is_err());
        assert!(Wifi::new("a\"b", "password1", "psk").is_err());
        assert!(Wifi::new(" home", "password1", "psk").is_err());
        assert!(Wifi::new("Café 5G", "password1", "psk").is_ok());
    }

    #[test]
    fn quoting_for_shell_and_yaml() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(yaml_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
