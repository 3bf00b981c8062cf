//! Arbitrary bytes as a scenario file: parsed, and when valid, simulated in checking mode.
//! See `portsim::fuzz_scenario` and README.md ("Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portsim::fuzz_scenario(data);
});
