//! Writes as real bytes: each write sequence number owns one 4 KiB block of a small image,
//! filled with a line that names it. A write reaches an image through `rbd import-diff` (the
//! one rbd command that writes data, no kernel device needed); what a copy holds is read back
//! from `rbd export`, so the ledger of the real backend is what the bytes say.

use sha2::{Digest as _, Sha256};

/// Bytes per write.
pub const BLOCK: u64 = 4096;
/// The real size of every image, whatever Mold reports: exports stay quick, and there is room
/// for this many writes per image before blocks are reused.
pub const IMAGE_BYTES: u64 = 16 << 20;
const BLOCKS: u64 = IMAGE_BYTES / BLOCK;

const MAGIC: &[u8] = b"drbook write ";

/// Where a write lands.
fn offset(seq: u64) -> u64 {
    (seq % BLOCKS) * BLOCK
}

/// The block a write fills: `drbook write <seq>` lines up to 4 KiB.
fn block(seq: u64) -> Vec<u8> {
    let line = format!("drbook write {seq:020}\n");
    line.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(usize::try_from(BLOCK).unwrap_or(4096))
        .collect()
}

/// An `rbd diff v1` stream (what `rbd import-diff` reads) writing these sequence numbers.
pub fn diff_stream(seqs: &[u64]) -> Vec<u8> {
    let mut out = b"rbd diff v1\n".to_vec();
    for &seq in seqs {
        out.push(b'w');
        out.extend_from_slice(&offset(seq).to_le_bytes());
        out.extend_from_slice(&BLOCK.to_le_bytes());
        out.extend_from_slice(&block(seq));
    }
    out.push(b'e');
    out
}

/// The writes an exported image holds (each block checked whole, so a torn block does not
/// count), ascending, and the SHA-256 of the bytes.
pub fn read_export(bytes: &[u8]) -> (Vec<u64>, String) {
    let mut writes = Vec::new();
    let size = usize::try_from(BLOCK).unwrap_or(4096);
    for chunk in bytes.chunks(size) {
        let Some(seq) = chunk
            .strip_prefix(MAGIC)
            .and_then(|rest| rest.get(..20))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u64>().ok())
        else {
            continue;
        };
        if chunk == block(seq).as_slice() {
            writes.push(seq);
        }
    }
    writes.sort_unstable();
    let digest = Sha256::digest(bytes);
    let hex = digest.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    (writes, hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a diff stream to a byte image the way `rbd import-diff` does.
    fn apply(image: &mut [u8], diff: &[u8]) {
        let mut rest = diff.strip_prefix(b"rbd diff v1\n".as_slice()).unwrap();
        while let Some((&tag, tail)) = rest.split_first() {
            if tag == b'e' {
                return;
            }
            assert_eq!(tag, b'w');
            let off = usize::try_from(u64::from_le_bytes(tail[..8].try_into().unwrap())).unwrap();
            let len = usize::try_from(u64::from_le_bytes(tail[8..16].try_into().unwrap())).unwrap();
            image[off..off + len].copy_from_slice(&tail[16..16 + len]);
            rest = &tail[16 + len..];
        }
        panic!("no end record");
    }

    #[test]
    fn writes_read_back_from_the_bytes() {
        let mut image = vec![0u8; usize::try_from(IMAGE_BYTES).unwrap()];
        let (none, empty_sum) = read_export(&image);
        assert!(none.is_empty());
        apply(&mut image, &diff_stream(&[3, 1, 7]));
        apply(&mut image, &diff_stream(&[8]));
        let (writes, sum) = read_export(&image);
        assert_eq!(writes, vec![1, 3, 7, 8]);
        assert_ne!(sum, empty_sum);
        // A torn block is not a write.
        let at = usize::try_from(offset(7)).unwrap() + 100;
        image[at] ^= 0xff;
        assert_eq!(read_export(&image).0, vec![1, 3, 8]);
    }
}
