//! The warning for a gateway that anyone on the network can use.
//!
//! Without a master key and without virtual keys the gateway asks no client
//! for a key (LiteLLM's behaviour, kept so the offline demo needs no setup).
//! That is fine on `127.0.0.1`; on an address other machines reach, anyone
//! there spends the upstream keys and reads `/spend/*`. The binary listens on
//! `0.0.0.0` by default, so it says so loudly, at start and in `check-config`.

use std::net::IpAddr;

/// The warning to give when a gateway that asks for no key (`open`, see
/// [`Gateway::is_open`](crate::Gateway::is_open)) listens on `host`; `None`
/// when `host` is a loopback address or the gateway asks for a key.
pub fn open_access_warning(host: IpAddr, open: bool) -> Option<String> {
    // `::ffff:127.0.0.1` is loopback too.
    if !open || host.to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "NO MASTER KEY: listening on {host} with no general_settings.master_key and no \
         virtual keys, so anyone who can reach this address can make completions on your \
         upstream keys and read /spend/*. Set general_settings.master_key, or listen on \
         127.0.0.1 (--host 127.0.0.1)."
    ))
}

#[cfg(test)]
mod tests {
    use super::open_access_warning;

    #[test]
    fn an_open_gateway_on_any_address_but_loopback_is_called_out() {
        for host in ["0.0.0.0", "::", "10.1.2.3", "192.168.0.10"] {
            let warning = open_access_warning(host.parse().unwrap(), true)
                .unwrap_or_else(|| panic!("{host} is reachable from other machines"));
            assert!(warning.contains(host), "{warning}");
            assert!(warning.contains("general_settings.master_key"), "{warning}");
        }
    }

    #[test]
    fn loopback_or_a_key_needs_no_warning() {
        for host in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                open_access_warning(host.parse().unwrap(), true),
                None,
                "{host}"
            );
        }
        assert_eq!(open_access_warning("0.0.0.0".parse().unwrap(), false), None);
    }
}
