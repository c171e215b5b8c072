//! The rules Daraja applies to the URLs it will call back (`CallBackURL`, the C2B URLs).
//!
//! Daraja refuses a URL containing "mpesa" or "safaricom" in any case, anywhere: host, path,
//! query, and so the secret path segment too. One SDK also blocks `exe`, `exec`, `cmd`, `sql` and
//! `query` (reported). Daraja must reach the URL from the internet over HTTPS.
//!
//! [`check_callback_url`] has two levels. The lax one (the client's own pre-flight check, and the
//! sandbox's default) applies only the banned words, so the local demo can run over
//! `http://127.0.0.1`. The strict one is what production needs: HTTPS, a host that is not
//! loopback, and the SDK's words too. Call it on the configured public URL at startup.

use std::net::IpAddr;

/// Words Daraja refuses in a callback URL, in any case.
pub const BANNED_WORDS: [&str; 2] = ["mpesa", "safaricom"];
/// Words one SDK refuses too (reported); checked in strict mode.
pub const SDK_BANNED_WORDS: [&str; 5] = ["exe", "exec", "cmd", "sql", "query"];

/// Why Daraja would refuse a callback URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("not an absolute http(s) URL")]
    NotAUrl,
    #[error("the URL contains {0:?}, which Daraja refuses in any case")]
    BannedWord(&'static str),
    #[error("Daraja calls back over HTTPS only")]
    NotHttps,
    #[error("the host {0:?} cannot be reached from the internet")]
    NotPublic(String),
}

/// Checks a callback URL against Daraja's rules; `strict` adds HTTPS, a non-loopback host and the
/// SDK's banned words (see the module docs).
///
/// # Errors
/// The first rule the URL breaks, as a [`CallbackUrlError`].
pub fn check_callback_url(url: &str, strict: bool) -> Result<(), CallbackUrlError> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| CallbackUrlError::NotAUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CallbackUrlError::NotAUrl);
    }
    let host = parsed.host_str().ok_or(CallbackUrlError::NotAUrl)?;

    // The whole text is searched, since Daraja's check is a substring match on the raw URL.
    let lowered = url.to_ascii_lowercase();
    if let Some(word) = BANNED_WORDS.into_iter().find(|w| lowered.contains(w)) {
        return Err(CallbackUrlError::BannedWord(word));
    }
    if !strict {
        return Ok(());
    }
    if let Some(word) = SDK_BANNED_WORDS.into_iter().find(|w| lowered.contains(w)) {
        return Err(CallbackUrlError::BannedWord(word));
    }
    if parsed.scheme() != "https" {
        return Err(CallbackUrlError::NotHttps);
    }
    if is_local_host(host) {
        return Err(CallbackUrlError::NotPublic(host.to_owned()));
    }
    Ok(())
}

fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lowered = host.to_ascii_lowercase();
    if lowered == "localhost" || lowered.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUKA: &str = "https://shop.example.co.ke/payments/Xq7vT2kd9LwP4nRbH3s8Ze/stk";

    #[test]
    fn duka_s_own_callback_url_passes_both_levels() {
        assert_eq!(check_callback_url(DUKA, false), Ok(()));
        assert_eq!(check_callback_url(DUKA, true), Ok(()));
    }

    #[test]
    fn mpesa_or_safaricom_anywhere_and_in_any_case_is_refused() {
        for url in [
            "https://mpesa.example.co.ke/cb",
            "https://shop.example.co.ke/MPesa/cb",
            "https://shop.example.co.ke/payments/xxSAFARICOMxx/stk",
            "https://shop.example.co.ke/cb?from=M-PESA&x=mpesa",
        ] {
            assert!(
                matches!(
                    check_callback_url(url, false),
                    Err(CallbackUrlError::BannedWord(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn the_lax_level_lets_the_local_demo_call_back_over_http_on_loopback() {
        assert_eq!(
            check_callback_url("http://127.0.0.1:8080/payments/s/stk", false),
            Ok(())
        );
        assert_eq!(
            check_callback_url("http://localhost:8080/x/query", false),
            Ok(())
        );
    }

    #[test]
    fn the_strict_level_wants_https_a_public_host_and_none_of_the_sdk_words() {
        let strict = |url| check_callback_url(url, true);
        assert_eq!(
            strict("http://shop.example.co.ke/cb"),
            Err(CallbackUrlError::NotHttps)
        );
        assert!(matches!(
            strict("https://127.0.0.1/cb"),
            Err(CallbackUrlError::NotPublic(_))
        ));
        assert!(matches!(
            strict("https://[::1]/cb"),
            Err(CallbackUrlError::NotPublic(_))
        ));
        assert!(matches!(
            strict("https://LocalHost/cb"),
            Err(CallbackUrlError::NotPublic(_))
        ));
        assert_eq!(
            strict("https://shop.example.co.ke/cmd/cb"),
            Err(CallbackUrlError::BannedWord("cmd"))
        );
        assert_eq!(
            strict("https://shop.example.co.ke/cb?query=1"),
            Err(CallbackUrlError::BannedWord("query"))
        );
    }

    #[test]
    fn text_that_is_not_an_http_url_is_refused() {
        for url in [
            "",
            "not a url",
            "ftp://shop.example.co.ke/cb",
            "/payments/s/stk",
        ] {
            assert_eq!(
                check_callback_url(url, false),
                Err(CallbackUrlError::NotAUrl),
                "{url}"
            );
        }
    }
}
