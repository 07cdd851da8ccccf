//! Which provider and which of its payment products an order goes through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The payment provider behind an order, by its lowercase name (`wechat`, `alipay`, …) as used
/// in URLs, the API and the database. Open-ended: a provider crate names its own kind, and the
/// gateway learns which kinds exist from the apps it has configured, so adding a provider adds
/// no variant here. Stored inline (at most [`ProviderKind::MAX_LEN`] bytes), so it stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderKind {
    len: u8,
    bytes: [u8; ProviderKind::MAX_LEN],
}

impl ProviderKind {
    /// WeChat Pay (its merchant API v2 or v3, chosen per app).
    pub const WECHAT: ProviderKind = ProviderKind::from_static("wechat");
    /// Alipay open platform (`gateway.do`, RSA2).
    pub const ALIPAY: ProviderKind = ProviderKind::from_static("alipay");
    /// The longest name a provider may have.
    pub const MAX_LEN: usize = 15;

    /// A provider kind from a name fixed at compile time; an invalid name fails the build.
    pub const fn from_static(name: &str) -> ProviderKind {
        match ProviderKind::checked(name) {
            Some(kind) => kind,
            None => panic!("a provider name is 1 to 15 of a-z, 0-9 and _, starting with a letter"),
        }
    }

    const fn checked(name: &str) -> Option<ProviderKind> {
        let raw = name.as_bytes();
        if raw.is_empty() || raw.len() > ProviderKind::MAX_LEN || !raw[0].is_ascii_lowercase() {
            return None;
        }
        let mut bytes = [0_u8; ProviderKind::MAX_LEN];
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return None;
            }
            bytes[i] = b;
            i += 1;
        }
        Some(ProviderKind {
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The lowercase name used in URLs, the API and the database.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (see `checked`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Parses a provider name (whether such a provider is configured is the registry's
    /// question, not this type's).
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        ProviderKind::checked(text).ok_or_else(|| {
            DomainError::UnknownProvider(text.chars().take(ProviderKind::MAX_LEN + 1).collect())
        })
    }
}

/// By name.
impl Ord for ProviderKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ProviderKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderKind({})", self.as_str())
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProviderKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ProviderKind::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A payment product: how the buyer is taken to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// WeChat mini-program (`wx.requestPayment`) or Alipay mini program (`my.tradePay`).
    MiniProgram,
    /// WeChat official-account web page (`WeixinJSBridge` / `wx.chooseWXPay`).
    Jsapi,
    /// A native mobile app handing the pay params to the provider's SDK.
    App,
    /// WeChat QR code the buyer scans (`code_url`).
    Native,
    /// WeChat mobile browser outside WeChat (`mweb_url`).
    H5,
    /// Alipay mobile web redirect (`alipay.trade.wap.pay`).
    Wap,
    /// Alipay desktop web redirect (`alipay.trade.page.pay`).
    Page,
    /// Alipay QR code the buyer scans (`alipay.trade.precreate`).
    Precreate,
}

impl Channel {
    /// Every channel, for exhaustive listings.
    pub const ALL: [Channel; 8] = [
        Channel::MiniProgram,
        Channel::Jsapi,
        Channel::App,
        Channel::Native,
        Channel::H5,
        Channel::Wap,
        Channel::Page,
        Channel::Precreate,
    ];

    /// The snake_case name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::MiniProgram => "mini_program",
            Channel::Jsapi => "jsapi",
            Channel::App => "app",
            Channel::Native => "native",
            Channel::H5 => "h5",
            Channel::Wap => "wap",
            Channel::Page => "page",
            Channel::Precreate => "precreate",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| DomainError::UnknownChannel(text.to_owned()))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()).unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        for p in [ProviderKind::WECHAT, ProviderKind::ALIPAY] {
            assert_eq!(ProviderKind::parse(p.as_str()).unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!(Channel::parse("qr").is_err());
        assert_eq!(ProviderKind::parse("fakepay").unwrap().as_str(), "fakepay");
        let rejected = [
            "",
            "Wechat",
            "9pay",
            "we-chat",
            "wechat ",
            "a_very_long_provider_name",
            "支付宝",
        ];
        for bad in rejected {
            assert!(ProviderKind::parse(bad).is_err(), "{bad:?}");
        }
        let from_json: Result<ProviderKind, _> = serde_json::from_str("\"UPPER\"");
        assert!(from_json.is_err());
    }
}
