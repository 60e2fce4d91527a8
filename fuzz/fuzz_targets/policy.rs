//! The policy parser on arbitrary text: a policy or an error naming a key, never a panic; an
//! accepted policy evaluates for every workflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = attest_policy::Policy::from_toml(text) {
            assert_eq!(policy.hash().len(), 64);
            for w in attest_core::Workflow::ALL {
                assert!(policy.rules(w).is_some());
            }
        }
    }
});
