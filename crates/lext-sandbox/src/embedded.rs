//! The programs lext carries inside its own binary (the echo runtime and
//! the cgroup guard, built by `build.rs`), and how they are written out.
//!
//! Writing one out reads its bytes, which maps them into lext's memory: two
//! programs of about 360 KB each, resident for the rest of lext's life for
//! one copy. Once written, those pages are handed back.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Writes `program`, embedded in this binary, to `path` as an executable
/// (mode 0755), then releases the pages the copy touched.
pub(crate) fn write_program(path: &Path, program: &'static [u8]) -> io::Result<()> {
    std::fs::write(path, program)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    release(program);
    Ok(())
}

/// Drops this process's page-table entries for the whole pages inside
/// `bytes`. Best effort: a failure changes nothing but the memory figure.
fn release(bytes: &'static [u8]) {
    let page = rustix::param::page_size();
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) & !(page - 1);
    if end <= start {
        return;
    }
    // SAFETY: `start..end` lies inside `bytes`, read-only data of this
    // binary's private file mapping, which nothing ever writes. For such a
    // mapping MADV_DONTNEED only drops the page-table entries; a later read
    // (another environment writing the program again, from any thread)
    // faults the same bytes back in from the file.
    let _ = unsafe {
        rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            end - start,
            rustix::mm::Advice::LinuxDontNeed,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    static DATA: [u8; 3 * 65536] = {
        let mut data = [0u8; 3 * 65536];
        let mut i = 0;
        while i < data.len() {
            data[i] = (i % 251) as u8;
            i += 1;
        }
        data
    };

    #[test]
    fn a_written_program_is_whole_executable_and_still_readable_after_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("program");
        write_program(&path, &DATA).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), DATA);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // The released pages read back the same bytes.
        assert!(DATA.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        write_program(&path, &DATA).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), DATA);
    }
}
