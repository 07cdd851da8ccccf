//! The configured provider apps, looked up by provider and name. Each app is one
//! `Arc<dyn Provider>`; WeChat apps also keep a WeChat login client for the login, OAuth and
//! JS-SDK endpoints, which are not part of the payment boundary and are the same for a v2 and
//! a v3 app (appid + AppSecret).

use std::collections::BTreeMap;
use std::sync::Arc;

use paygate_core::{AppName, Channel, Provider, ProviderKind};
use paygate_wechat::login::LoginClient;

/// One configured provider app.
#[derive(Clone)]
pub struct ProviderApp {
    /// The app's configured name.
    pub name: AppName,
    /// The provider behind it.
    pub provider: Arc<dyn Provider>,
    /// The WeChat login client (mini-program login, official-account OAuth, `wx.config`), for
    /// a WeChat app of either API version; `None` for other providers.
    pub wechat: Option<Arc<LoginClient>>,
}

impl ProviderApp {
    /// Which provider this app belongs to.
    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// Whether the app is set up for `channel`.
    pub fn offers(&self, channel: Channel) -> bool {
        self.provider.capabilities().channel(channel).is_some()
    }
}

/// Every configured app.
#[derive(Clone, Default)]
pub struct Registry {
    apps: BTreeMap<(ProviderKind, AppName), ProviderApp>,
    /// The app a request naming none gets when a provider has several (the embedded
    /// sandbox's v2 WeChat app beside its v3 one).
    defaults: BTreeMap<ProviderKind, AppName>,
}

impl Registry {
    /// Adds an app; names are unique per provider.
    pub fn insert(&mut self, app: ProviderApp) {
        self.apps.insert((app.kind(), app.name.clone()), app);
    }

    /// The app `name` of `provider`.
    pub fn get(&self, provider: ProviderKind, name: &AppName) -> Option<&ProviderApp> {
        self.apps.get(&(provider, name.clone()))
    }

    /// Makes `name` the app of `provider` that requests naming none get.
    pub fn set_default(&mut self, provider: ProviderKind, name: AppName) {
        self.defaults.insert(provider, name);
    }

    /// The app to use when a request names none: the only app of that provider, if there is
    /// exactly one, else the one set as its default.
    pub fn sole(&self, provider: ProviderKind) -> Option<&ProviderApp> {
        let mut of_provider = self.apps.values().filter(|a| a.kind() == provider);
        match (of_provider.next(), of_provider.next()) {
            (Some(app), None) => Some(app),
            _ => self
                .defaults
                .get(&provider)
                .and_then(|name| self.get(provider, name)),
        }
    }

    /// The same apps with every provider wrapped by `wrap` (to observe its calls, say).
    pub fn map_providers(self, wrap: impl Fn(Arc<dyn Provider>) -> Arc<dyn Provider>) -> Registry {
        let apps = self
            .apps
            .into_iter()
            .map(|(key, app)| {
                let provider = wrap(app.provider);
                (key, ProviderApp { provider, ..app })
            })
            .collect();
        Registry {
            apps,
            defaults: self.defaults,
        }
    }

    /// Every app, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = &ProviderApp> {
        self.apps.values()
    }
}
