//! Which provider and which of its payment products an order goes through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The payment provider behind an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// WeChat Pay, merchant API v2 (XML, MD5 / HMAC-SHA256).
    Wechat,
    /// Alipay open platform (`gateway.do`, RSA2).
    Alipay,
}

impl ProviderKind {
    /// Every provider, for exhaustive listings.
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Wechat, ProviderKind::Alipay];

    /// The lowercase name used in URLs, the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Wechat => "wechat",
            ProviderKind::Alipay => "alipay",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| DomainError::UnknownProvider(text.to_owned()))
    }

    /// The channels this provider offers.
    pub const fn channels(self) -> &'static [Channel] {
        match self {
            ProviderKind::Wechat => &[
                Channel::MiniProgram,
                Channel::Jsapi,
                Channel::App,
                Channel::Native,
                Channel::H5,
            ],
            ProviderKind::Alipay => &[
                Channel::App,
                Channel::Wap,
                Channel::Page,
                Channel::Precreate,
                Channel::MiniProgram,
            ],
        }
    }

    /// Whether `channel` exists at this provider.
    pub fn supports(self, channel: Channel) -> bool {
        self.channels().contains(&channel)
    }

    /// The largest single order this provider takes. WeChat's `total_fee` is a signed 32-bit
    /// `Int` in fen; Alipay's `total_amount` tops out at 100,000,000.00 yuan.
    pub const fn max_order_fen(self) -> i64 {
        match self {
            ProviderKind::Wechat => i32::MAX as i64,
            ProviderKind::Alipay => crate::Fen::MAX_ORDER.get(),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment product: how the buyer is taken to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
        for p in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(p.as_str()).unwrap(), p);
        }
        assert!(Channel::parse("qr").is_err());
        assert!(ProviderKind::parse("paypal").is_err());
    }

    #[test]
    fn channels_belong_to_their_provider() {
        assert!(ProviderKind::Wechat.supports(Channel::Native));
        assert!(!ProviderKind::Wechat.supports(Channel::Precreate));
        assert!(ProviderKind::Alipay.supports(Channel::Page));
        assert!(!ProviderKind::Alipay.supports(Channel::Jsapi));
        assert!(ProviderKind::Wechat.supports(Channel::MiniProgram));
        assert!(ProviderKind::Alipay.supports(Channel::MiniProgram));
    }

    #[test]
    fn provider_caps_match_the_wire_types() {
        assert_eq!(ProviderKind::Wechat.max_order_fen(), 2_147_483_647);
        assert_eq!(ProviderKind::Alipay.max_order_fen(), 10_000_000_000);
    }
}
