//! Settings from TOML: secrets inline or from files, and every refusal naming its key.

use paygate_wechat_v3::config::WechatV3Settings;

use crate::vectors::dir;

/// A TOML app with the vector keys given by file, plus `extra` lines.
fn toml_app(extra: &str) -> String {
    let keys = dir().join("keys");
    let path = |file: &str| keys.join(file).display().to_string();
    format!(
        "api = \"v3\"\nappid = \"wxd678efh567hg6787\"\nmchid = \"1230000109\"\n\
         merchant_certificate_file = \"{}\"\nprivate_key_file = \"{}\"\napiv3_key_file = \"{}\"\n\
         public_key_id = \"PUB_KEY_ID_0112300001092025010100000000000001\"\npublic_key_file = \"{}\"\n{extra}",
        path("merchant_apiclient_cert.pem"),
        path("merchant_apiclient_key.pem"),
        path("apiv3_key.txt"),
        path("wechatpay_pub_key.pem"),
    )
}

fn load(toml_text: &str) -> Result<paygate_wechat_v3::config::WechatV3App, String> {
    let settings: WechatV3Settings = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    settings.load().map_err(|e| e.to_string())
}

/// Replaces the line starting with `key =` by `line`.
fn with_line(toml_text: &str, key: &str, line: &str) -> String {
    toml_text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_file_based_app_loads_with_the_certificate_serial_and_defaults() {
    let app = load(&toml_app("")).unwrap();
    assert_eq!(
        app.signer.serial_no(),
        "7383B331C603DA9DB202271FB5A8FFACC2B4B7DE"
    );
    assert_eq!(
        app.keys.public_key_id(),
        Some("PUB_KEY_ID_0112300001092025010100000000000001")
    );
    assert_eq!(app.api_base, "https://api.mch.weixin.qq.com");
    assert!(!app.platform_certificates);
    assert!(!app.channels.contains(&paygate_core::Channel::H5));
    let with_serial =
        toml_app("merchant_serial_no = \"7383b331c603da9db202271fb5a8ffacc2b4b7de\"\n");
    assert!(load(&with_serial).is_ok());
}

#[test]
fn inline_secrets_load_and_never_show_in_debug() {
    let key_pem = std::fs::read_to_string(dir().join("keys/merchant_apiclient_key.pem")).unwrap();
    let apiv3 = std::fs::read_to_string(dir().join("keys/apiv3_key.txt")).unwrap();
    let text = with_line(
        &with_line(
            &toml_app(""),
            "private_key_file",
            &format!("private_key = '''{key_pem}'''"),
        ),
        "apiv3_key_file",
        &format!("apiv3_key = \"{apiv3}\""),
    );
    let settings: WechatV3Settings = toml::from_str(&text).unwrap();
    let app = settings.load().unwrap();
    for printed in [format!("{settings:?}"), format!("{app:?}")] {
        assert!(!printed.contains(&apiv3), "{printed}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains(&key_pem[40..80]), "{printed}");
    }
}

#[test]
fn each_bad_setting_is_refused_naming_its_key() {
    let keys = dir().join("keys");
    let tmp = tempfile::tempdir().unwrap();
    let short_key = tmp.path().join("short");
    std::fs::write(&short_key, "0123456789abcdef0123456789abcde\n").unwrap();
    let cases = [
        (
            with_line(&toml_app(""), "apiv3_key_file", "apiv3_key = \"too-short\""),
            "`apiv3_key`",
        ),
        (
            with_line(
                &toml_app(""),
                "apiv3_key_file",
                &format!("apiv3_key_file = \"{}\"", short_key.display()),
            ),
            "`apiv3_key_file`",
        ),
        (
            with_line(
                &toml_app(""),
                "private_key_file",
                &format!(
                    "private_key_file = \"{}\"",
                    keys.join("attacker_key.pem").display()
                ),
            ),
            "`private_key_file`: does not belong to the merchant certificate",
        ),
        (
            toml_app("merchant_serial_no = \"3A414D8EE28675E1BDBF02E87A0B7F366202CC00\"\n"),
            "`merchant_serial_no`",
        ),
        (
            with_line(
                &toml_app(""),
                "public_key_id",
                "public_key_id = \"PUB_KEY_0112\"",
            ),
            "`public_key_id`",
        ),
        (
            with_line(&toml_app(""), "public_key_id", ""),
            "`public_key_id`",
        ),
        (
            with_line(
                &with_line(&toml_app(""), "public_key_id", ""),
                "public_key_file",
                "",
            ),
            "no verification key",
        ),
        (
            with_line(&toml_app(""), "merchant_certificate_file", ""),
            "`merchant_certificate`",
        ),
        (
            with_line(
                &toml_app(""),
                "private_key_file",
                "private_key_file = \"/nonexistent/key.pem\"",
            ),
            "`private_key_file`: cannot read",
        ),
        (
            toml_app("apiv3_key = \"iGKrJgaQQrqAjH9rApce0OdFkOSSBQuB\"\n"),
            "not both",
        ),
        (toml_app("channels = [\"h5\"]\n"), "`h5_info`"),
        (toml_app("channels = [\"wap\"]\n"), "`channels`"),
        (with_line(&toml_app(""), "api", "api = \"v2\""), "`api`"),
    ];
    for (text, expected) in cases {
        let err = load(&text).unwrap_err();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert!(!err.contains("iGKrJgaQQrqAjH9rApce0OdFkOSSBQuB"), "{err}");
    }
}

#[test]
fn certificate_mode_alone_is_a_valid_key_mode() {
    let text = with_line(
        &with_line(
            &toml_app("platform_certificates = true\n"),
            "public_key_id",
            "",
        ),
        "public_key_file",
        "",
    );
    let app = load(&text).unwrap();
    assert!(app.platform_certificates);
    assert_eq!(app.keys.public_key_id(), None);
}

#[test]
fn the_login_settings_carry_the_app_secret_from_either_source_and_never_show_it() {
    use secrecy::ExposeSecret as _;

    // Without an AppSecret the app still loads: login answers "no app_secret" at call time.
    let bare = load(&toml_app("")).unwrap();
    assert!(bare.login.app_secret.is_none());
    assert_eq!(bare.login.login_base, None, "the real host is the default");

    let secret = "0123456789abcdef0123456789abcdef";
    let inline = toml_app(&format!(
        "app_secret = \"{secret}\"\nlogin_base = \"http://127.0.0.1:9\"\noauth_base = \"http://127.0.0.1:9/o\"\n"
    ));
    let settings: WechatV3Settings = toml::from_str(&inline).unwrap();
    let app = settings.load().unwrap();
    let login = &app.login;
    assert_eq!(
        login
            .app_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some(secret.to_owned())
    );
    assert_eq!(login.login_base.as_deref(), Some("http://127.0.0.1:9"));
    assert_eq!(login.oauth_base.as_deref(), Some("http://127.0.0.1:9/o"));
    for printed in [format!("{settings:?}"), format!("{app:?}")] {
        assert!(!printed.contains(secret), "{printed}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app_secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let from_file = load(&toml_app(&format!(
        "app_secret_file = \"{}\"\n",
        file.display()
    )))
    .unwrap();
    assert_eq!(
        from_file
            .login
            .app_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some(secret.to_owned()),
        "the file's trailing newline is not part of the secret"
    );

    for (extra, key) in [
        (
            format!(
                "app_secret = \"{secret}\"\napp_secret_file = \"{}\"\n",
                file.display()
            ),
            "`app_secret`",
        ),
        (
            "app_secret_file = \"/nonexistent/app_secret\"\n".to_owned(),
            "`app_secret_file`",
        ),
        ("login_base = \"not a url\"\n".to_owned(), "`login_base`"),
        ("oauth_base = \"::\"\n".to_owned(), "`oauth_base`"),
    ] {
        let err = load(&toml_app(&extra)).unwrap_err();
        assert!(err.contains(key), "{extra}: {err}");
        assert!(!err.contains(secret), "{err}");
    }
}
