//! The service code for gateways whose requests do not say which code was dialled.
//!
//! Arkesel, Nalo and Beem send the shopper's dial string on the first hop (Beem not even
//! that) but never the shop's own service code, so `*920*12*1#` cannot be told apart into the
//! code `*920*12#` and a deep-dial input `1`, or the code `*920*12*1#` and none. The shop says
//! it once, in the callback URL pasted into the gateway's dashboard:
//! `https://shop.example/ussd/arkesel?service_code=920*12`. With it, a first hop splits a deep
//! dial as every other gateway does; without it, the first hop is a plain dial (a deep dial
//! shows the welcome screen, never a guessed product) and the dial string is the code recorded.

use serde::Deserialize;

use super::{deep_dial_inputs, service_code, BadCallback, HopInput};

/// The query parameter naming the service code.
pub const PARAM: &str = "service_code";

#[derive(Debug, Default, Deserialize)]
struct Query {
    service_code: Option<String>,
}

/// The service code configured on the route's URL, if any (`920*12`, `*920*12#`).
///
/// # Errors
/// [`BadCallback::InvalidField`] when the query cannot be read or the code is not digits
/// separated by `*`: a mistyped URL is refused on every hop rather than silently ignored.
pub fn configured(query: Option<&str>) -> Result<Option<String>, BadCallback> {
    let invalid = |why: String| BadCallback::InvalidField { field: PARAM, why };
    let raw: Query = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| invalid(e.to_string()))?;
    let Some(raw) = raw.service_code.filter(|code| !code.trim().is_empty()) else {
        return Ok(None);
    };
    let code = service_code(&raw);
    let digits = code.trim_start_matches('*').trim_end_matches('#');
    if digits.len() > 32
        || digits
            .split('*')
            .any(|part| part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(format!(
            "{raw:?} is not a service code such as 920*12"
        )));
    }
    Ok(Some(code))
}

/// The service code and the input of a session's first hop, from the dial string the gateway
/// sent (empty or anything else when it sent none) and the configured code.
pub fn first_hop(code: Option<&str>, dial: &str) -> (String, HopInput) {
    match code {
        Some(code) => (
            code.to_owned(),
            HopInput::Dial(deep_dial_inputs(code, dial)),
        ),
        None if dial.starts_with('*') => (service_code(dial), HopInput::Dial(Vec::new())),
        None => (String::new(), HopInput::Dial(Vec::new())),
    }
}

/// The route's path with the client's service code, as the shop would paste it in the
/// gateway's dashboard.
pub fn path_with_code(path: &str, code: &str) -> String {
    let digits = code.trim().trim_start_matches('*').trim_end_matches('#');
    if digits.is_empty() {
        return path.to_owned();
    }
    let query = serde_urlencoded::to_string([(PARAM, digits)]).unwrap_or_default();
    format!("{path}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_code_is_read_in_either_shape() {
        assert_eq!(
            configured(Some("service_code=920*12")).unwrap().as_deref(),
            Some("*920*12#")
        );
        assert_eq!(
            configured(Some("service_code=%2A920%2A12%23"))
                .unwrap()
                .as_deref(),
            Some("*920*12#")
        );
        assert_eq!(configured(None).unwrap(), None);
        assert_eq!(configured(Some("other=1")).unwrap(), None);
        assert_eq!(configured(Some("service_code=")).unwrap(), None);
    }

    #[test]
    fn a_mistyped_code_is_refused() {
        for query in [
            "service_code=abc",
            "service_code=920**12",
            "service_code=%FF",
        ] {
            assert!(
                configured(Some(query)).is_err(),
                "{query} should be refused"
            );
        }
    }

    #[test]
    fn a_deep_dial_splits_only_with_a_configured_code() {
        assert_eq!(
            first_hop(Some("*920*12#"), "*920*12*1*3#"),
            (
                "*920*12#".to_owned(),
                HopInput::Dial(vec!["1".into(), "3".into()])
            )
        );
        assert_eq!(
            first_hop(None, "*920*12*1#"),
            ("*920*12*1#".to_owned(), HopInput::Dial(Vec::new()))
        );
        assert_eq!(
            first_hop(None, "0"),
            (String::new(), HopInput::Dial(Vec::new()))
        );
    }

    #[test]
    fn the_client_puts_the_code_on_the_path() {
        assert_eq!(
            path_with_code("/ussd/nalo", "*384*12#"),
            "/ussd/nalo?service_code=384*12"
        );
        assert_eq!(path_with_code("/ussd/nalo", ""), "/ussd/nalo");
        assert_eq!(
            configured(Some("service_code=384*12")).unwrap().as_deref(),
            Some("*384*12#")
        );
    }
}
