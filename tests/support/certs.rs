//! Test certificates (rcgen): certificate authorities and leaves for servers and clients, with the
//! names, URI SANs and validity a test needs — shared by the API server's credentials and the TLS
//! tests. Test code only.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate authority: its certificate in PEM and the issuer that signs with it.
pub fn new_ca(common_name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().expect("generate a key");
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert.pem(), Issuer::new(params, key))
}

/// What a leaf certificate says.
#[derive(Clone, Debug, Default)]
pub struct LeafSpec<'a> {
    pub common_name: &'a str,
    pub organizations: &'a [&'a str],
    /// DNS names or IPs.
    pub names: &'a [&'a str],
    pub uris: &'a [&'a str],
    /// Client (true) or server (false) authentication.
    pub client: bool,
    /// Valid only in 2020 (long expired).
    pub expired: bool,
}

/// A leaf certificate and its key (PEM) for `names` (DNS names or IPs), signed by `issuer`.
pub fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    organizations: &[&str],
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    leaf(
        issuer,
        &LeafSpec {
            common_name,
            organizations,
            names,
            client: usage == ExtendedKeyUsagePurpose::ClientAuth,
            ..LeafSpec::default()
        },
    )
}

/// A leaf certificate and its key (PEM) as `spec` says, signed by `issuer`.
pub fn leaf(issuer: &Issuer<'static, KeyPair>, spec: &LeafSpec<'_>) -> (String, String) {
    let mut params = CertificateParams::new(
        spec.names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<String>>(),
    )
    .expect("valid subject names");
    for uri in spec.uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().expect("a valid URI SAN")));
    }
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name);
    for org in spec.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if spec.client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    if spec.expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let key = KeyPair::generate().expect("generate a key");
    let cert = params
        .signed_by(&key, issuer)
        .expect("sign the certificate");
    (cert.pem(), key.serialize_pem())
}
