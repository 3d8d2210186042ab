//! Writes the binary encoding of every JSON seed of `corpus/decode_json` to
//! `corpus/decode_binary` (the binary target's seeds).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let out = root.join("decode_binary");
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(root.join("decode_json"))? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        if let Ok(s) = sysmon_core::codec::decode_json(&bytes) {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            let bin = sysmon_core::codec::encode(&s, sysmon_core::codec::Format::Binary);
            std::fs::write(out.join(format!("{name}.bin")), bin)?;
        }
    }
    Ok(())
}
