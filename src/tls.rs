//! Recognising a TLS handshake that failed on the server's certificate, for the Atlas client and the
//! KMS preflight alike: a certificate no trusted CA signed is not an outage to wait out but a trust
//! store to mend (a TLS-inspecting proxy, a private CA), so both report it as such instead of retrying.

/// Whether `error`, or an error it wraps, is rustls refusing the peer's certificate. rustls's error sits
/// behind hyper's and an `io::Error`, whose `source()` skips the error it wraps, so that one is opened
/// by hand.
pub fn refused_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if matches!(
            error.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && refused_certificate(inner)
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connector error")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn a_certificate_error_is_found_behind_io_errors_and_sources() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = Wrapper(std::io::Error::new(std::io::ErrorKind::InvalidData, refused));
        assert!(refused_certificate(&wrapped));

        let other = Wrapper(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        ));
        assert!(
            !refused_certificate(&other),
            "a TLS failure that is not the certificate"
        );
        let refused_connection = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!refused_certificate(&refused_connection));
    }
}
