//! A cheap structural check of an OLE2 / Compound File Binary container (an XLS) before calamine
//! opens it.
//!
//! calamine 0.38 (`cfb.rs`, `Sectors::get_chain`) follows FAT chains without remembering where it
//! has been: a chain that loops back on itself makes it append sectors without end (the directory
//! chain has no length bound at all; the mini stream, mini FAT and stream chains are bounded only by
//! lengths the file itself declares, up to 4 GiB and beyond). A fuzz-found 21 KB XLS takes the
//! whole process down that way. This check walks the same chains calamine will walk, in the same
//! way, but remembers the sectors it has visited: a loop, a sector past the end of the file or an
//! index past the end of the FAT is refused before calamine allocates anything.
//!
//! Linear in the file size: every chain visits each sector at most once, and what it keeps (the
//! FAT, the directory, the mini FAT, a visited flag per sector) is at most about the size of the
//! file. Whatever calamine itself refuses cleanly (a short header, a wrong signature or sector
//! shift, an empty root directory) passes here and is left to calamine's own error.

use std::fmt;
use std::ops::Range;

pub(super) const SIGNATURE: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const HEADER_LEN: usize = 512;
/// Sector ids at or above this are markers, not sectors (calamine's `RESERVED_SECTORS`).
const RESERVED: u32 = 0xFFFF_FFFA;
/// DIFAT entries below this name FAT sectors (calamine filters on it).
const DIFSECT: u32 = 0xFFFF_FFFC;
const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
const DIR_ENTRY_LEN: usize = 128;
const MINI_SECTOR_LEN: usize = 64;
/// Streams shorter than this live in the mini stream.
const MINI_STREAM_CUTOFF: u64 = 4096;

/// Which chain of the container is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chain {
    Difat,
    Fat,
    Directory,
    MiniStream,
    MiniFat,
    Stream,
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Chain::Difat => "DIFAT",
            Chain::Fat => "FAT",
            Chain::Directory => "directory",
            Chain::MiniStream => "mini stream",
            Chain::MiniFat => "mini FAT",
            Chain::Stream => "workbook stream",
        })
    }
}

/// Why a container is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Damage {
    /// A chain comes back to a sector it has already visited.
    Loop(Chain),
    /// A chain names a sector past the end of the file, or a FAT entry past the end of the FAT.
    OutOfRange(Chain),
    /// A FAT or DIFAT sector is cut short by the end of the file.
    Truncated(Chain),
    /// The DIFAT names more FAT sectors than the file has sectors.
    TooManyFatSectors,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Loop(c) => write!(f, "its {c} sector chain loops back on itself"),
            Damage::OutOfRange(c) => {
                write!(f, "its {c} sector chain points past the end of the file")
            }
            Damage::Truncated(c) => write!(f, "a {c} sector is cut short"),
            Damage::TooManyFatSectors => {
                f.write_str("it names more FAT sectors than the file has sectors")
            }
        }
    }
}

/// Checks the chains calamine's `Cfb::new` and the XLS reader's `get_stream` calls will follow.
pub(super) fn check(bytes: &[u8]) -> Result<(), Damage> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(()); // calamine: "too small"
    };
    if header[..8] != SIGNATURE || u16_at(header, 32) != 0x0006 {
        return Ok(()); // calamine: invalid signature / minisector shift
    }
    let sector_len = match u16_at(header, 30) {
        0x0009 => 512,
        0x000C => 4096,
        _ => return Ok(()), // calamine: invalid sector shift
    };
    // The header occupies the first sector; sector `i` starts at `(i + 1) * sector_len`.
    let Some(body) = bytes.get(sector_len..) else {
        return Ok(()); // calamine: a 4096-byte header cut short is an I/O error
    };
    let sectors = Area::new(body, sector_len);

    // The DIFAT: 109 entries in the header, then a chain of DIFAT sectors whose last entry names
    // the next one (calamine pops it off the end of the whole list).
    let mut difat: Vec<u32> = u32s(&header[76..HEADER_LEN]).collect();
    let mut visited = vec![false; sectors.count];
    let mut id = u32_at(header, 68);
    while id < RESERVED {
        let sector = sectors.full(body, id, Chain::Difat)?;
        mark(&mut visited, id, Chain::Difat)?;
        difat.extend(u32s(sector));
        id = difat.pop().ok_or(Damage::OutOfRange(Chain::Difat))?;
    }

    // The FAT: the concatenation of the sectors the DIFAT names.
    let fat_ids: Vec<u32> = difat.into_iter().filter(|id| *id < DIFSECT).collect();
    if fat_ids.len() > sectors.count {
        return Err(Damage::TooManyFatSectors);
    }
    let mut fat = Vec::with_capacity(fat_ids.len() * (sector_len / 4));
    for id in fat_ids {
        fat.extend(u32s(sectors.full(body, id, Chain::Fat)?));
    }

    // The directory: its whole chain, 128-byte entries.
    let dir_chain = walk(
        u32_at(header, 48),
        &fat,
        sectors,
        u64::MAX,
        Chain::Directory,
    )?;
    let directory = gather(body, &dir_chain);
    let entries: Vec<&[u8]> = directory
        .chunks(DIR_ENTRY_LEN)
        .filter(|c| c.len() == DIR_ENTRY_LEN)
        .collect();
    let Some(root) = entries.first() else {
        return Ok(()); // calamine: "Empty Root directory"
    };
    let entry_len = |entry: &[u8]| {
        if sector_len == 512 {
            u64::from(u32_at(entry, 120))
        } else {
            u64_at(entry, 120)
        }
    };

    // The mini stream (the root entry's chain) and the mini FAT, read only when the header
    // declares a mini FAT.
    let mini_fat_len = u64::from(u32_at(header, 64));
    let (ministream, mini_fat) = if mini_fat_len > 0 {
        let root_start = u32_at(root, 116);
        let chain = walk(
            root_start,
            &fat,
            sectors,
            entry_len(root),
            Chain::MiniStream,
        )?;
        let ministream_len: usize = chain.iter().map(|r| r.len()).sum();
        let chain = walk(
            u32_at(header, 60),
            &fat,
            sectors,
            mini_fat_len.saturating_mul(sector_len as u64),
            Chain::MiniFat,
        )?;
        let bytes = gather(body, &chain);
        if bytes.len() % 4 != 0 {
            return Err(Damage::Truncated(Chain::MiniFat));
        }
        (ministream_len, u32s(&bytes).collect())
    } else {
        (0, Vec::new())
    };
    let minis = Area {
        len: ministream,
        sector_len: MINI_SECTOR_LEN,
        count: ministream.div_ceil(MINI_SECTOR_LEN),
    };

    // The streams the XLS reader reads: the first entry with the name (ASCII case-insensitive).
    let stream = |name: &str| -> Option<Result<(), Damage>> {
        let entry = entries.iter().find(|e| name_is(e, name))?;
        let (start, len) = (u32_at(entry, 116), entry_len(entry));
        Some(if len < MINI_STREAM_CUTOFF {
            walk(start, &mini_fat, minis, len, Chain::Stream).map(drop)
        } else {
            walk(start, &fat, sectors, len, Chain::Stream).map(drop)
        })
    };
    // "Workbook", and "Book" when "Workbook" is absent or unreadable.
    match (stream("Workbook"), stream("Book")) {
        (Some(Err(e)), None | Some(Err(_))) | (None, Some(Err(e))) => return Err(e),
        _ => {}
    }
    for name in ["\u{5}SummaryInformation", "\u{5}DocumentSummaryInformation"] {
        if let Some(Err(e)) = stream(name) {
            return Err(e);
        }
    }
    Ok(())
}

/// A run of equal sectors: the file after its header, or the mini stream.
#[derive(Clone, Copy)]
struct Area {
    len: usize,
    sector_len: usize,
    /// Sectors that start inside the area (the last one may be cut short).
    count: usize,
}

impl Area {
    fn new(body: &[u8], sector_len: usize) -> Area {
        Area {
            len: body.len(),
            sector_len,
            count: body.len().div_ceil(sector_len),
        }
    }

    /// The byte range of sector `id` within the area, if it starts inside it.
    fn range(&self, id: u32) -> Option<Range<usize>> {
        let start = (id as usize).checked_mul(self.sector_len)?;
        (start < self.len).then(|| start..self.len.min(start + self.sector_len))
    }

    /// A whole sector of the file body (FAT and DIFAT sectors must be whole).
    fn full<'a>(&self, body: &'a [u8], id: u32, chain: Chain) -> Result<&'a [u8], Damage> {
        let range = self.range(id).ok_or(Damage::OutOfRange(chain))?;
        if range.len() != self.sector_len {
            return Err(Damage::Truncated(chain));
        }
        body.get(range).ok_or(Damage::OutOfRange(chain))
    }
}

/// Follows a chain from `start` through `table` the way calamine's `get_chain` does (it stops at
/// `ENDOFCHAIN` or once `limit` bytes are collected, reading the first sector even for a limit of
/// zero) and returns the byte ranges it would copy. Each sector is visited at most once.
fn walk(
    start: u32,
    table: &[u32],
    area: Area,
    limit: u64,
    chain: Chain,
) -> Result<Vec<Range<usize>>, Damage> {
    let mut visited = vec![false; area.count];
    let mut ranges = Vec::new();
    let mut total: u64 = 0;
    let mut id = start;
    while id != ENDOFCHAIN {
        let range = area.range(id).ok_or(Damage::OutOfRange(chain))?;
        mark(&mut visited, id, chain)?;
        let take = (range.len() as u64).min(limit - total);
        total += take;
        // `take` is at most `range.len()`, so it fits in a usize.
        ranges.push(range.start..range.start + take as usize);
        if total >= limit {
            break;
        }
        id = *table.get(id as usize).ok_or(Damage::OutOfRange(chain))?;
    }
    Ok(ranges)
}

fn mark(visited: &mut [bool], id: u32, chain: Chain) -> Result<(), Damage> {
    let seen = visited
        .get_mut(id as usize)
        .ok_or(Damage::OutOfRange(chain))?;
    if *seen {
        return Err(Damage::Loop(chain));
    }
    *seen = true;
    Ok(())
}

fn gather(body: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.len()).sum());
    for r in ranges {
        out.extend_from_slice(body.get(r.clone()).unwrap_or_default());
    }
    out
}

/// Whether a directory entry's name (UTF-16LE, up to the first NUL) is `name`, ASCII
/// case-insensitively, as calamine compares it.
fn name_is(entry: &[u8], name: &str) -> bool {
    let units = entry[..64]
        .chunks_exact(2)
        .map(|u| u16::from_le_bytes([u[0], u[1]]));
    let mut wanted = name.bytes().map(Some).chain(std::iter::repeat(None));
    for unit in units {
        match wanted.next().flatten() {
            Some(b) => {
                let ok = u8::try_from(unit).is_ok_and(|u| u.eq_ignore_ascii_case(&b));
                if !ok {
                    return false;
                }
            }
            None => return unit == 0,
        }
    }
    // All 32 units used by the name itself.
    wanted.next().flatten().is_none()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

fn u32s(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;

    const FREESECT: u32 = 0xFFFF_FFFF;
    const FATSECT: u32 = 0xFFFF_FFFD;

    fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn dir_entry(b: &mut [u8], name: &str, kind: u8, start: u32, len: u32) {
        for (i, u) in name.encode_utf16().enumerate() {
            put_u16(b, i * 2, u);
        }
        put_u16(b, 64, (name.len() as u16 + 1) * 2);
        b[66] = kind;
        put_u32(b, 68, FREESECT);
        put_u32(b, 72, FREESECT);
        put_u32(b, 76, FREESECT);
        put_u32(b, 116, start);
        put_u32(b, 120, len);
    }

    /// A version-3 container of 512-byte sectors: sector 0 the FAT, sector 1 the directory
    /// (root + "Workbook"), sectors 2..=9 a 4096-byte Workbook stream. `edit` changes the FAT and
    /// the header before they are written.
    fn container(edit: impl FnOnce(&mut Vec<u32>, &mut [u8])) -> Vec<u8> {
        let mut header = vec![0u8; 512];
        header[..8].copy_from_slice(&SIGNATURE);
        put_u16(&mut header, 24, 0x3E);
        put_u16(&mut header, 26, 3);
        put_u16(&mut header, 28, 0xFFFE);
        put_u16(&mut header, 30, 9);
        put_u16(&mut header, 32, 6);
        put_u32(&mut header, 44, 1); // FAT sectors
        put_u32(&mut header, 48, 1); // first directory sector
        put_u32(&mut header, 56, 4096);
        put_u32(&mut header, 60, ENDOFCHAIN); // no mini FAT
        put_u32(&mut header, 64, 0);
        put_u32(&mut header, 68, ENDOFCHAIN); // no DIFAT sectors
        for i in 0..109 {
            put_u32(&mut header, 76 + i * 4, if i == 0 { 0 } else { FREESECT });
        }
        let mut fat = vec![FATSECT, ENDOFCHAIN, 3, 4, 5, 6, 7, 8, 9, ENDOFCHAIN];
        fat.resize(128, FREESECT);
        edit(&mut fat, &mut header);

        let mut out = header;
        for v in &fat {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut dir = vec![0u8; 512];
        dir_entry(&mut dir[..128], "Root Entry", 5, ENDOFCHAIN, 0);
        dir_entry(&mut dir[128..256], "Workbook", 2, 2, 4096);
        out.extend_from_slice(&dir);
        out.extend(std::iter::repeat_n(0x42, 4096));
        out
    }

    #[test]
    fn a_well_formed_container_passes() {
        assert_eq!(check(&container(|_, _| {})), Ok(()));
        // A loop after the stream's declared length is never followed (nor by calamine).
        assert_eq!(check(&container(|fat, _| fat[9] = 2)), Ok(()));
    }

    #[test]
    fn a_fat_chain_that_loops_is_refused() {
        // The directory chain points at itself: calamine would read it for ever.
        assert_eq!(
            check(&container(|fat, _| fat[1] = 1)),
            Err(Damage::Loop(Chain::Directory))
        );
        // The Workbook stream loops back before its 4096 bytes are read.
        assert_eq!(
            check(&container(|fat, _| fat[5] = 3)),
            Err(Damage::Loop(Chain::Stream))
        );
    }

    #[test]
    fn a_sector_past_the_end_of_the_file_is_refused() {
        assert_eq!(
            check(&container(|fat, _| fat[4] = 1000)),
            Err(Damage::OutOfRange(Chain::Stream))
        );
        assert_eq!(
            check(&container(|_, h| put_u32(h, 48, 50))),
            Err(Damage::OutOfRange(Chain::Directory))
        );
        // A FAT sector past the end of the file.
        assert_eq!(
            check(&container(|_, h| put_u32(h, 80, 77))),
            Err(Damage::OutOfRange(Chain::Fat))
        );
        // A DIFAT chain that points at itself.
        assert_eq!(
            check(&container(|_, h| put_u32(h, 68, 1000))),
            Err(Damage::OutOfRange(Chain::Difat))
        );
    }

    #[test]
    fn what_calamine_refuses_itself_is_left_to_it() {
        assert_eq!(check(b""), Ok(()));
        assert_eq!(check(&[0u8; 600]), Ok(()));
        let mut bad_shift = container(|_, _| {});
        put_u16(&mut bad_shift, 30, 7);
        assert_eq!(check(&bad_shift), Ok(()));
    }

    #[test]
    fn names_compare_like_calamine() {
        let mut e = [0u8; 128];
        dir_entry(&mut e, "WORKBOOK", 2, 0, 0);
        assert!(name_is(&e, "Workbook"));
        assert!(!name_is(&e, "Book"));
        assert!(!name_is(&e, "Workbook2"));
    }
}
