//! The konfig-compatible ini reader, with interpolation, on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use syncserver_fcgi::config::Ini;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "HOME").then(|| "/home/fuzz".to_string());
    if let Ok(ini) = Ini::parse(text, Path::new("/etc/syncserver"), &env) {
        let sections: Vec<String> = ini.sections().map(str::to_string).collect();
        for s in &sections {
            let keys: Vec<String> = ini.keys(s).map(str::to_string).collect();
            for k in &keys {
                let _ = ini.get(s, k);
                let _ = ini.get_strings(s, k);
            }
        }
    }
});
