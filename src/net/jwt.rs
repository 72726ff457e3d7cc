//! The signed JWT a SMART Backend Services client sends as `client_assertion` (private-key
//! JWT client authentication, RFC 7523), signed with `ring`.
//!
//! Receives the client's PKCS#8 PEM private key (RSA → RS384, EC P-384 → ES384, the two
//! algorithms SMART requires servers to support), the client id, the token URL and the current
//! time; emits the compact JWS `header.claims.signature` (base64url, no padding):
//! header `{"alg","typ":"JWT","kid"?}`, claims `iss = sub = client_id`, `aud = token_url`,
//! `exp = now + 300 s` (SMART's maximum), `jti` = a random UUID.
//!
//! The key never reaches a log: [`SigningKey`]'s `Debug` names the algorithm only.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;

/// Lifetime of an assertion (SMART Backend Services: no more than five minutes).
pub const ASSERTION_LIFETIME_SECS: i64 = 300;

/// `client_assertion_type` for a JWT assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why no assertion could be made. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the private key is not a PKCS#8 PEM (`BEGIN PRIVATE KEY`): {0}")]
    Pem(String),
    #[error("the private key is neither RSA nor EC P-384 (SMART needs RS384 or ES384)")]
    UnsupportedKey,
    #[error("signing failed")]
    Sign,
    #[error("no random bytes for the jti")]
    Random,
}

/// A client's signing key.
pub enum SigningKey {
    Rs384(RsaKeyPair),
    Es384(EcdsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.alg())
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, JwtError> {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| JwtError::Pem(e.to_string()))?;
        Self::from_pkcs8(der.secret_pkcs8_der())
    }

    /// Reads a PKCS#8 DER private key: RSA first, then EC P-384.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JwtError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self::Rs384(k));
        }
        let rng = SystemRandom::new();
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
            .map(Self::Es384)
            .map_err(|_| JwtError::UnsupportedKey)
    }

    /// The JWS `alg`.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rs384(_) => "RS384",
            Self::Es384(_) => "ES384",
        }
    }

    fn sign(&self, msg: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, JwtError> {
        match self {
            Self::Rs384(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA384, rng, msg, &mut sig)
                    .map_err(|_| JwtError::Sign)?;
                Ok(sig)
            }
            // FIXED signing gives r || s, the JWS form (RFC 7518 §3.4).
            Self::Es384(k) => k
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JwtError::Sign),
        }
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    jti: &'a str,
}

/// The signed `client_assertion` for `client_id` at `token_url`, made at `now_unix` seconds
/// with the given `jti`.
pub fn client_assertion(
    key: &SigningKey,
    key_id: Option<&str>,
    client_id: &str,
    token_url: &str,
    now_unix: i64,
    jti: &str,
) -> Result<String, JwtError> {
    let header = Header {
        alg: key.alg(),
        typ: "JWT",
        kid: key_id,
    };
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: token_url,
        exp: now_unix.saturating_add(ASSERTION_LIFETIME_SECS),
        jti,
    };
    // Serialising these plain structs cannot fail.
    let h = serde_json::to_vec(&header).map_err(|_| JwtError::Sign)?;
    let c = serde_json::to_vec(&claims).map_err(|_| JwtError::Sign)?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h),
        URL_SAFE_NO_PAD.encode(c)
    );
    let sig = key.sign(signing_input.as_bytes(), &SystemRandom::new())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// A random (version 4) UUID for `jti`.
pub fn random_jti(rng: &dyn SecureRandom) -> Result<String, JwtError> {
    let mut b = [0u8; 16];
    rng.fill(&mut b).map_err(|_| JwtError::Random)?;
    Ok(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
        let p: Vec<&str> = jwt.split('.').collect();
        assert_eq!(p.len(), 3, "{jwt}");
        let dec = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
        let h = serde_json::from_slice(&dec(p[0])).expect("header JSON");
        let c = serde_json::from_slice(&dec(p[1])).expect("claims JSON");
        (h, c, dec(p[2]), format!("{}.{}", p[0], p[1]))
    }

    fn pem(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn an_es384_assertion_carries_the_smart_claims_and_verifies() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .unwrap();
        let key = SigningKey::from_pem(pem(doc.as_ref()).as_bytes()).unwrap();
        let SigningKey::Es384(pair) = &key else {
            panic!("EC key read as {key:?}");
        };
        let public = pair.public_key().as_ref().to_vec();
        let jwt = client_assertion(
            &key,
            Some("k1"),
            "vitalsd",
            "https://auth/token",
            1_000,
            "j-1",
        )
        .unwrap();
        let (h, c, sig, input) = parts(&jwt);
        assert_eq!(h, serde_json::json!({"alg":"ES384","typ":"JWT","kid":"k1"}));
        assert_eq!(
            c,
            serde_json::json!({"iss":"vitalsd","sub":"vitalsd","aud":"https://auth/token","exp":1300,"jti":"j-1"})
        );
        signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, &public)
            .verify(input.as_bytes(), &sig)
            .expect("signature verifies");
    }

    #[test]
    fn an_rs384_assertion_verifies_with_the_public_key() {
        let key = SigningKey::from_pem(include_bytes!("testdata/rsa2048-test-only.pem")).unwrap();
        let SigningKey::Rs384(pair) = &key else {
            panic!("RSA key read as {key:?}");
        };
        let public = pair.public().as_ref().to_vec();
        let jwt = client_assertion(&key, None, "c", "https://t", 0, "j").unwrap();
        let (h, _, sig, input) = parts(&jwt);
        assert_eq!(h, serde_json::json!({"alg":"RS384","typ":"JWT"}));
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA384, &public)
            .verify(input.as_bytes(), &sig)
            .expect("signature verifies");
    }

    #[test]
    fn a_p256_key_or_garbage_is_refused() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        assert_eq!(
            SigningKey::from_pem(pem(p256.as_ref()).as_bytes()).unwrap_err(),
            JwtError::UnsupportedKey
        );
        assert!(matches!(
            SigningKey::from_pem(b"not a key"),
            Err(JwtError::Pem(_))
        ));
    }

    #[test]
    fn the_key_is_redacted_in_debug_output() {
        let key = SigningKey::from_pem(include_bytes!("testdata/rsa2048-test-only.pem")).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(RS384, <redacted>)");
    }

    #[test]
    fn jtis_are_random_version_4_uuids() {
        let rng = SystemRandom::new();
        let a = random_jti(&rng).unwrap();
        let b = random_jti(&rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }
}
