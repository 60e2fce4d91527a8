//! Android Key Attestation: from a certificate chain to verified claims or a precise rejection.
//!
//! This room owns the evidence format: DER and X.509 as devices really emit them, the
//! KeyDescription extension in every schema version, chain verification against pinned anchors,
//! revocation and claims. It is pure: no I/O, no clock, no randomness, no logging. Time is an
//! argument; the status list and extra anchors are values the caller loads.
//!
//! ```no_run
//! use attest_android::{TrustAnchors, Verifier, pem};
//! use attest_core::UnixTime;
//! # let text = "";
//! let chain = pem::parse_certificates(text).unwrap();
//! let verifier = Verifier::new(TrustAnchors::google());
//! let appraisal = verifier.appraise_der(chain, UnixTime::from_secs(1_790_000_000), None);
//! match appraisal.outcome {
//!     Ok(evidence) => println!("level {:?}", evidence.claims().security_level),
//!     Err(r) => println!("{}: {}", r.reason, r.detail),
//! }
//! ```

#![forbid(unsafe_code)]

mod anchors;
mod chain;
mod claims;
pub mod der;
mod keydesc;
pub mod pem;
mod revocation;
mod sig;
mod x509;

pub use anchors::{
    AOSP_SOFTWARE_EC_SPKI_SHA256, AOSP_SOFTWARE_RSA_SPKI_SHA256, AnchorError, AnchorId,
    GOOGLE_ECP384_SPKI_SHA256, GOOGLE_RSA4096_SPKI_SHA256, TrustAnchor, TrustAnchors,
};
pub use chain::{
    Appraisal, ChainLimits, ChainSummary, LinkCache, Provisioning, Rejection, UnverifiedChain,
    VerifiedEvidence, Verifier,
};
pub use claims::{Claims, PatchLevel, SoftwareEnforced};
pub use keydesc::{
    AttestationApplicationId, AttestationIds, AuthValue, AuthorizationList, KeyDescription,
    KeyDescriptionLimits, PackageInfo, RootOfTrust, SecurityLevel, VerifiedBootState, tag,
    tag_name,
};
pub use revocation::{
    CertificateStatus, Listing, MAX_STATUS_LIST_BYTES, StatusList, StatusListError,
};
pub use sig::{SignatureError, verify_with_spki};
pub use x509::{Certificate, Curve, KeyAlgorithm, SignatureAlgorithm, split_spki};

/// Object identifiers of the extensions this crate reads, as DER content octets.
pub mod oids {
    pub use crate::x509::oid::{KEY_DESCRIPTION, PROVISIONING_INFO};
}

pub use attest_core::hex::encode as hex;
